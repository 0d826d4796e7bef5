"""``valor web``: a read-only dashboard over the schedulers' read model and the PROMISES log.

``live`` tails the log into the scheduler's own projection, ``views`` turns it
into the JSON the page and the tests read (pure), ``server`` is a small GET-only
HTTP server with Server-Sent Events, and ``index.html`` is the whole page.
"""
