"""Downloading a client's image URL: the one place that talks to the outside world.

``fetch`` (the fetcher: size, time and redirect limits; built from the Downloader's
settings by :func:`~imagetagger.download.fetch.fetcher_from_settings`), ``netguard``
(which addresses may be connected to, checked where the connection is made) and
``hostlimit`` (at most N downloads from one host at a time). The service's Downloader
and the bulk job both fetch through it.
"""
