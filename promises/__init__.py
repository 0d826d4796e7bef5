"""The promise domain: what a promise is, the states it goes through, how its
events fold into state, what makes a plan valid and how its history is told.

Pure and below everything else: it imports only ``schemas``.  The services and
``valor/`` read promises through it; nothing here knows NATS, the clock or a
configuration file.
"""
