from feedsvc.posts.readers.base import Convention


class Hugo(Convention):
    name = "hugo"
