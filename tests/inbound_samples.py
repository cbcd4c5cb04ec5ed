"""Realistic inbound mail, written from the RFCs (3464 DSN, 5965 ARF) and the formats big providers send.

Each function returns the raw bytes an MTA would deliver to the bounce mailbox. `verp` is the envelope sender
the original mail went out with (bounces+<token>@…), which every bounce is addressed to.
"""

from __future__ import annotations

ORIGINAL_HEADERS = """\
Return-Path: <{verp}>
From: "Test Blog" <news@blog.example.org>
To: {recipient}
Subject: New on Test Blog
Message-ID: <4f1c2a9e0b@blog.example.org>
List-Unsubscribe: <https://blog.example.org/unsubscribe/abc>,
 <mailto:{mailto}>
Date: Mon, 02 Nov 2026 12:00:00 +0000
"""


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def postfix_dsn(verp: str, recipient: str, *, status: str = "5.1.1",
                diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table",
                action: str = "failed", serial: str = "1") -> bytes:
    """A Postfix bounce: multipart/report with the human part, message/delivery-status and the original headers."""
    diagnostic = diagnostic.format(r=recipient)
    return _crlf(f"""\
Return-Path: <>
Delivered-To: {verp}
Received: by mx.example.net (Postfix) id 3F1A2B{serial}; Mon,  2 Nov 2026 12:00:0{serial} +0000 (UTC)
Date: Mon,  2 Nov 2026 12:00:0{serial} +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="3F1A2B{serial}.1762084800/mx.example.net"
Message-Id: <20261102120000.3F1A2B{serial}@mx.example.net>

This is a MIME-encapsulated message.

--3F1A2B{serial}.1762084800/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{recipient}>: host mail.example.com[203.0.113.5] said: 550 5.1.1 <{recipient}>:
    Recipient address rejected (in reply to RCPT TO command)

--3F1A2B{serial}.1762084800/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 3F1A2B{serial}
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: Mon,  2 Nov 2026 12:00:00 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: {diagnostic}

--3F1A2B{serial}.1762084800/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.format(verp=verp, recipient=recipient, mailto="unsubscribe@blog.example.org")}
--3F1A2B{serial}.1762084800/mx.example.net--
""")


def gmail_dsn(verp: str, recipient: str) -> bytes:
    """Gmail's "Address not found" bounce: a DSN whose text part is HTML-ish prose, status 5.1.1."""
    return _crlf(f"""\
Delivered-To: {verp}
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {verp}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
Message-ID: <6560fd7a.170a0220.4b7c1.a2f1.GMR@mx.google.com>
Date: Mon, 02 Nov 2026 04:00:02 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000a1b2c3"; report-type=delivery-status

--000000000000a1b2c3
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {recipient} because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

--000000000000a1b2c3
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; relay.blog.example.org
Arrival-Date: Mon, 02 Nov 2026 04:00:01 -0800 (PST)
X-Original-Message-ID: <4f1c2a9e0b@blog.example.org>

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. https://support.google.com/mail/?p=NoSuchUser
Last-Attempt-Date: Mon, 02 Nov 2026 04:00:02 -0800 (PST)

--000000000000a1b2c3
Content-Type: message/rfc822

{ORIGINAL_HEADERS.format(verp=verp, recipient=recipient, mailto="unsubscribe@blog.example.org")}
Hello.

--000000000000a1b2c3--
""")


def outlook_mailbox_full(verp: str, recipient: str) -> bytes:
    """An Exchange Online NDR for a full mailbox: action failed but status 5.2.2, which is soft."""
    return _crlf(f"""\
From: postmaster@outlook.com
To: {verp}
Date: Mon, 2 Nov 2026 12:01:00 +0000
Subject: Undeliverable: New on Test Blog
Message-ID: <b1c2d3e4-0000-4000-8000-000000000001@DM6PR01MB0001.namprd01.prod.outlook.com>
Content-Language: en-US
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="_000_b1c2d3e4_"
X-MS-Exchange-Message-Is-Ndr:

--_000_b1c2d3e4_
Content-Type: text/plain; charset="us-ascii"

Your message to {recipient} couldn't be delivered.
The recipient's mailbox is full and can't accept messages now.

--_000_b1c2d3e4_
Content-Type: message/delivery-status

Reporting-MTA: dns;DM6PR01MB0001.namprd01.prod.outlook.com
Received-From-MTA: dns;relay.blog.example.org
Arrival-Date: Mon, 2 Nov 2026 12:00:59 +0000

Final-Recipient: rfc822;{recipient}
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp;554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded

--_000_b1c2d3e4_--
""")


def exim_bounce(verp: str, recipient: str) -> bytes:
    """Exim's classic non-DSN bounce: plain text plus X-Failed-Recipients."""
    return _crlf(f"""\
Return-path: <>
Envelope-to: {verp}
From: Mail Delivery System <Mailer-Daemon@mx.example.com>
To: {verp}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1qXyZz-0001Ab-Cd@mx.example.com>
Date: Mon, 02 Nov 2026 12:00:00 +0000
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    host mail.example.com [203.0.113.9]
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    550 No such user here

------ This is a copy of the message, including all the headers. ------

{ORIGINAL_HEADERS.format(verp=verp, recipient=recipient, mailto="unsubscribe@blog.example.org")}
Hello.
""")


def exim_delay_dsn(verp: str, recipient: str, serial: str) -> bytes:
    """A DSN telling that delivery failed for now (4.2.2 over quota after retries): a soft bounce."""
    return postfix_dsn(
        verp, recipient, status="4.2.2", action="failed", serial=serial,
        diagnostic="smtp; 452 4.2.2 <{r}>: Mailbox is full, try again later",
    )


def arf_complaint(recipient: str, *, original_mail_from: str, mailto: str, to: str = "fbl@blog.example.org",
                  feedback_type: str = "abuse", reporter: str = "Yahoo! Mail AntiSpam Feedback") -> bytes:
    """An ARF report (RFC 5965) as Yahoo's and Outlook's (JMRP) feedback loops send them, original included."""
    return _crlf(f"""\
From: {reporter} <feedback@arf.mail.yahoo.com>
To: {to}
Subject: FW: New on Test Blog
Date: Mon, 02 Nov 2026 13:00:00 +0000
Message-ID: <arf-20261102130000-1@arf.mail.yahoo.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
	boundary="----=_Part_ARF_1"

------=_Part_ARF_1
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP 198.51.100.7 on Mon, 02 Nov 2026 12:00:05 +0000.
For more information about this format please see http://www.mipassoc.org/arf/.

------=_Part_ARF_1
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 1
Original-Mail-From: <{original_mail_from}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Mon, 02 Nov 2026 12:00:05 +0000
Source-IP: 198.51.100.7
Reported-Domain: blog.example.org

------=_Part_ARF_1
Content-Type: message/rfc822
Content-Disposition: inline

{ORIGINAL_HEADERS.format(verp=original_mail_from, recipient=recipient, mailto=mailto)}
Hello.

------=_Part_ARF_1--
""")


def mailto_unsubscribe(mailto: str, sender: str) -> bytes:
    """What Gmail's and Apple Mail's unsubscribe button sends to the mailto of List-Unsubscribe."""
    return _crlf(f"""\
From: {sender}
To: {mailto}
Subject: unsubscribe
Date: Mon, 02 Nov 2026 14:00:00 +0000
Message-ID: <CAunsub0001@mail.gmail.com>
MIME-Version: 1.0
Content-Type: text/plain; charset="UTF-8"

This message was automatically generated by Gmail.
""")


def vacation_reply(to: str, sender: str) -> bytes:
    """An auto-reply to the bounce address: neither a bounce nor a complaint."""
    return _crlf(f"""\
From: {sender}
To: {to}
Subject: Out of office: New on Test Blog
Auto-Submitted: auto-replied
Date: Mon, 02 Nov 2026 14:00:00 +0000
Message-ID: <ooo-1@example.com>

I am away until Monday and will read your message then.
""")
