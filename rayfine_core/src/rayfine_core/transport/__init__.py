"""Transport: how bytes reach an environment's server and what they mean.

``wire`` frames HTTP/1.1, ``client`` moves it over Unix sockets, TCP and TLS,
``channel`` holds the clients of one endpoint, ``protocol`` encodes calls and
maps errors, ``dialects`` say how each environment type speaks HTTP, and
``signatures`` checks arguments before anything is sent.
"""
