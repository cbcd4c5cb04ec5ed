from feedsvc.posts.readers.base import Convention


class Jekyll(Convention):
    name = "jekyll"
