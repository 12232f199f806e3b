"""Cost, latency, data, proxy training and quality metrics."""

from core.hugepages import request as _request_huge_pages

_request_huge_pages()  # before anything imports torch (core/hugepages.py)
