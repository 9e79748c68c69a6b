"""Bounded reads of answers the operator does not control: a pod's, a metrics backend's.

Why. Every model depends on one operator process, and it reads answers written by others: a
pod's ``GET /predictions`` (through the API server's pod proxy) and Prometheus' query answers.
Read whole, a pod answering 200 MiB grows the operator by at least that much (one pod could
OOM the operator every model depends on), and a socket read timeout does not stop a pod that
trickles a byte a second (each byte restarts it). So every such answer is read as a stream
under three bounds (``Bounds``):

- size: a declared ``Content-Length`` above the limit is refused before a byte is read, and
  the bytes read are counted as they come; reading stops at the limit;
- time: a deadline for the whole answer, checked between reads, and each socket read waits at
  most ``stall_seconds`` (so the deadline is overshot by at most that); ``read1`` returns
  whatever one socket read brought, so a trickle meets the deadline check at every byte;
- no decoding: a compressed answer could expand past any limit after the check, so the
  operator asks for ``identity`` and refuses anything else.

A refused answer raises ``AnswerError`` (``AnswerTooLargeError``, ``AnswerTooSlowError``)
whose message says what was wrong, in words meant for a status; callers add where (which pod,
which URL).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import requests
import urllib3

CHUNK_BYTES: Final = 64 * 1024
"""The most one read asks for (it returns sooner with whatever one socket read brought)."""


class AnswerError(Exception):
    """An answer refused by the bounds, or cut short; the message says why."""


class AnswerTooLargeError(AnswerError):
    """More bytes than the limit."""


class AnswerTooSlowError(AnswerError):
    """Not complete by the deadline, or silent for longer than a socket read may wait."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much, and how long, one answer may take."""

    max_bytes: int
    seconds: float
    """The whole answer, from sending the request to its last byte."""
    connect_seconds: float = 3.0
    stall_seconds: float = 2.0
    """The longest one socket read may wait for a byte."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if min(self.seconds, self.connect_seconds, self.stall_seconds) <= 0:
            raise ValueError(f"every time bound must be > 0: {self}")

    def timeouts(self, remaining: float | None = None) -> tuple[float, float]:
        """(connect, read) socket timeouts, none longer than ``remaining`` seconds."""
        left = self.seconds if remaining is None else max(remaining, 0.001)
        return min(self.connect_seconds, left), min(self.stall_seconds, left)


def size(n: int) -> str:
    """Bytes in words: '8 MiB', '200 MiB', '512 bytes'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def read_bounded(
    response: urllib3.BaseHTTPResponse,
    bounds: Bounds,
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """The whole body of a not yet read ``response`` (urllib3, ``preload_content=False``),
    or ``AnswerError``. ``deadline`` is on ``clock`` (monotonic seconds). The connection is
    released when the body was read to its end, and closed when it was not."""
    complete = False
    try:
        body = _read(response, bounds, deadline, clock)
        complete = True
        return body
    finally:
        if not complete:
            response.close()  # the rest is never read: the connection cannot be reused
        response.release_conn()


def _read(
    response: urllib3.BaseHTTPResponse,
    bounds: Bounds,
    deadline: float,
    clock: Callable[[], float],
) -> bytes:
    encoding = str(response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise AnswerError(
            f"the answer is compressed (Content-Encoding: {encoding}); only plain answers are"
            " read, since a compressed one could expand past the size limit"
        )
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > bounds.max_bytes:
        raise AnswerTooLargeError(
            f"the answer is {size(int(declared))} (Content-Length), more than the"
            f" {size(bounds.max_bytes)} limit; none of it was read"
        )
    body = bytearray()
    while True:
        if clock() > deadline:
            raise AnswerTooSlowError(
                f"the answer was not complete within {bounds.seconds:g} s"
                f" ({len(body):,} bytes arrived)"
            )
        try:
            chunk = response.read1(CHUNK_BYTES, decode_content=False)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise AnswerTooSlowError(
                f"no byte of the answer for {bounds.stall_seconds:g} s"
                f" ({len(body):,} bytes arrived)"
            ) from None
        except urllib3.exceptions.ProtocolError as error:
            raise AnswerError(
                f"the answer broke off after {len(body):,} bytes: {str(error)[:200]}"
            ) from None
        if not chunk:
            return bytes(body)
        if len(body) + len(chunk) > bounds.max_bytes:
            raise AnswerTooLargeError(
                f"the answer is larger than the {size(bounds.max_bytes)} limit; reading stopped"
                f" there (no Content-Length was declared)"
                if declared is None
                else f"the answer is larger than the {size(bounds.max_bytes)} limit"
                f" (more bytes than its Content-Length {declared} said); reading stopped there"
            )
        body += chunk


class AnswerRefusedError(requests.exceptions.RequestException):
    """``BoundedSession``'s refusal of an answer, as a requests error (callers catch those)."""

    def __init__(self, reason: AnswerError, **kwargs: Any) -> None:
        super().__init__(str(reason), **kwargs)
        self.reason = reason

    @property
    def too_slow(self) -> bool:
        return isinstance(self.reason, AnswerTooSlowError)


class BoundedSession(requests.Session):
    """A requests Session whose every answer is read under ``bounds``.

    Built on requests' public API only: ``Session.send`` is overridden to send with
    ``stream=True`` and the bounds' socket timeouts, the body is read from ``Response.raw``
    (urllib3) with ``read_bounded``, and ``Response.raw`` is then replaced by the bytes read,
    so ``Response.content``/``json()`` (what client libraries such as prometheus-api-client
    call) see exactly those bytes. A refused answer raises ``AnswerRefusedError``.
    """

    def __init__(self, bounds: Bounds) -> None:
        super().__init__()
        self.bounds = bounds
        self.headers["Accept-Encoding"] = "identity"

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        deadline = time.monotonic() + self.bounds.seconds
        kwargs["stream"] = True
        kwargs["timeout"] = self.bounds.timeouts()
        response = super().send(request, **kwargs)
        if isinstance(response.raw, _ReadBody):
            return response  # a redirect's target, read by the nested send that fetched it
        try:
            body = read_bounded(response.raw, self.bounds, deadline)
        except AnswerError as error:
            raise AnswerRefusedError(error, request=request, response=response) from None
        response.raw = _ReadBody(body)
        return response


class _ReadBody(io.BytesIO):
    """An answer's bytes, already read, where requests expects urllib3's response: requests
    releases the connection of a redirect's answer through it (already released here)."""

    def release_conn(self) -> None:
        pass
