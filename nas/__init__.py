"""Orchestration, CLI, storage and export."""

from core.hugepages import request as _request_huge_pages

_request_huge_pages()  # before anything imports torch (core/hugepages.py)
