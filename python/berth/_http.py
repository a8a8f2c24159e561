"""The HTTP client the SDK talks to a Berth server with (standard library only).

One connection per request (``http.client``), JSON in and out, bodies streamed from files, errors
turned into :class:`~berth.exceptions.WebserviceException` carrying the server's code and message.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import ssl
import urllib.parse
import uuid
from typing import IO, Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

from .exceptions import AzureMLException, WebserviceException

__all__ = ["HttpClient", "Response", "MultipartBody", "QueryParams", "raise_for_response", "operation_id_from"]

QueryParams = Union[Mapping[str, Any], Sequence[Tuple[str, Any]]]
Body = Union[bytes, BinaryIO, IO[bytes], None]

_CHUNK = 1 << 16


class Response:
    """A whole (buffered) HTTP answer."""

    def __init__(self, status: int, reason: str, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        #: Header names in lower case.
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body parsed as JSON (``None`` for an empty body)."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


class MultipartBody(io.RawIOBase):
    """A ``multipart/form-data`` body read part by part, so a large file is streamed, not loaded.

    :param parts: ``(name, content type, content)`` in order; content is bytes or a binary file
        positioned at its start whose remaining size is given as the fourth element.
    """

    def __init__(self, parts: Sequence[Tuple[str, str, Union[bytes, BinaryIO], int]]) -> None:
        super().__init__()
        self.boundary = "berth-" + uuid.uuid4().hex
        self._pieces: List[Union[bytes, Tuple[BinaryIO, int]]] = []
        for name, content_type, content, size in parts:
            head = (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode("utf-8")
            self._pieces.append(head)
            if isinstance(content, bytes):
                self._pieces.append(content)
            else:
                self._pieces.append((content, size))
            self._pieces.append(b"\r\n")
        self._pieces.append(f"--{self.boundary}--\r\n".encode("utf-8"))
        #: Total size in bytes (the ``Content-Length``).
        self.length = sum(len(p) if isinstance(p, bytes) else p[1] for p in self._pieces)
        self._index = 0
        self._offset = 0

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header value, with the boundary."""
        return f"multipart/form-data; boundary={self.boundary}"

    def readable(self) -> bool:
        """Always true: the body is read once, front to back."""
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        """The next ``size`` bytes of the body (``b""`` at the end)."""
        want = _CHUNK if size is None or size < 0 else size
        out = bytearray()
        while len(out) < want and self._index < len(self._pieces):
            piece = self._pieces[self._index]
            if isinstance(piece, bytes):
                chunk = piece[self._offset : self._offset + want - len(out)]
                self._offset += len(chunk)
                exhausted = self._offset >= len(piece)
            else:
                stream, total = piece
                chunk = stream.read(min(want - len(out), total - self._offset))
                self._offset += len(chunk)
                exhausted = not chunk or self._offset >= total
            out += chunk
            if exhausted:
                self._index += 1
                self._offset = 0
        return bytes(out)


def _format_params(params: Optional[QueryParams]) -> str:
    if not params:
        return ""
    items: Iterable[Tuple[str, Any]] = params.items() if isinstance(params, Mapping) else params
    pairs: List[Tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((key, str(value)))
    return urllib.parse.urlencode(pairs)


def raise_for_response(
    response: Response,
    what: str = "",
    exception: Type[AzureMLException] = WebserviceException,
    prefix: str = "",
) -> None:
    """Raises ``exception`` built from a management-API error answer.

    The message is the server's message, then every detail on its own line, then its hint.
    """
    code: Optional[str] = None
    message = ""
    details: List[str] = []
    hint: Optional[str] = None
    try:
        payload = response.json()
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        code = payload.get("code") if isinstance(payload.get("code"), str) else None
        message = payload["message"]
        raw_details = payload.get("details")
        if isinstance(raw_details, list):
            details = [str(d) for d in raw_details]
        raw_hint = payload.get("hint")
        hint = raw_hint if isinstance(raw_hint, str) and raw_hint else None
    else:
        message = (
            f"Received bad response from the Berth server{(' (' + what + ')') if what else ''}:\n"
            f"Response Code: {response.status}\nHeaders: {response.headers}\nContent: {response.text()}"
        )
    text = prefix + message
    if len(details) > 1:
        text = prefix + message.split(":", 1)[0] + ":\n" + "\n".join(f"- {d}" for d in details)
    if hint:
        text += f"\nHint: {hint}"
    raise exception(text, code=code, status_code=response.status, details=details, hint=hint)


class HttpClient:
    """Talks to one Berth server: base URL + workspace token.

    :param endpoint: ``http(s)://host:port`` of the management API.
    :param token: The workspace token (sent as ``Authorization: Bearer``).
    :param timeout: Seconds a single socket operation may take.
    """

    def __init__(self, endpoint: str, token: str, timeout: float = 300.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.timeout = timeout

    def url(self, path: str) -> str:
        """The absolute URL of an API path (absolute URLs are returned unchanged)."""
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.endpoint + (path if path.startswith("/") else "/" + path)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[QueryParams] = None,
        json_body: Any = None,
        body: Body = None,
        content_type: Optional[str] = None,
        content_length: Optional[int] = None,
        headers: Optional[Mapping[str, str]] = None,
        auth: Optional[str] = "workspace",
        expect: Sequence[int] = (200,),
        what: str = "",
        exception: Type[AzureMLException] = WebserviceException,
        sink: Optional[BinaryIO] = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """Sends one request and returns the answer; a status outside ``expect`` raises.

        :param auth: ``"workspace"`` sends the workspace token; ``None`` sends no credentials
            (pass your own ``Authorization`` in ``headers``).
        :param sink: When given, a successful answer's body is streamed into it instead of being
            buffered (``Response.body`` is then empty).
        """
        url = urllib.parse.urlsplit(self.url(path))
        target = url.path or "/"
        query = "&".join(q for q in (url.query, _format_params(params)) if q)
        if query:
            target += "?" + query
        send_headers: Dict[str, str] = {"Accept": "application/json", "User-Agent": "berth-python-sdk"}
        if auth == "workspace":
            send_headers["Authorization"] = f"Bearer {self.token}"
        payload: Body = body
        if json_body is not None:
            payload = json.dumps(json_body).encode("utf-8")
            send_headers["Content-Type"] = "application/json"
        if content_type:
            send_headers["Content-Type"] = content_type
        if isinstance(payload, bytes):
            send_headers["Content-Length"] = str(len(payload))
        elif payload is not None:
            if content_length is None:
                raise ValueError("a streamed body needs its content_length")
            send_headers["Content-Length"] = str(content_length)
        elif method in ("POST", "PUT", "PATCH"):
            send_headers["Content-Length"] = "0"
        if headers:
            send_headers.update(headers)
        connection = self._connect(url, timeout)
        try:
            try:
                connection.request(method, target, body=payload, headers=send_headers)
                raw = connection.getresponse()
                answer_headers = {k.lower(): v for k, v in raw.getheaders()}
                status = raw.status
                if sink is not None and status in expect:
                    while True:
                        chunk = raw.read(_CHUNK)
                        if not chunk:
                            break
                        sink.write(chunk)
                    data = b""
                else:
                    data = raw.read()
            except (OSError, http.client.HTTPException) as e:
                raise WebserviceException(
                    f"Cannot reach the Berth server at {url.scheme}://{url.netloc} "
                    f"({method} {url.path}): {e}",
                    inner_exception=e,
                    code="unavailable",
                ) from e
        finally:
            connection.close()
        response = Response(status, raw.reason, answer_headers, data)
        if status not in expect:
            if status in (404, 405) and not data.strip() and auth == "workspace":
                raise exception(
                    f"The Berth server at {self.endpoint} has no `{method} {url.path}` endpoint (HTTP {status}): "
                    "it is older than this SDK expects, or the URL is wrong.",
                    code="unsupported_endpoint",
                    status_code=status,
                )
            raise_for_response(response, what=what, exception=exception)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the body parsed as JSON."""
        return self.request(method, path, **kwargs).json()

    def _connect(self, url: urllib.parse.SplitResult, timeout: Optional[float]) -> http.client.HTTPConnection:
        host = url.hostname or "localhost"
        wait = self.timeout if timeout is None else timeout
        if url.scheme == "https":
            context = ssl.create_default_context()
            cafile = os.environ.get("BERTH_CA_BUNDLE")
            if cafile:
                context.load_verify_locations(cafile)
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, url.port, timeout=wait, context=context
            )
        elif url.scheme == "http":
            connection = http.client.HTTPConnection(host, url.port, timeout=wait)
        else:
            raise WebserviceException(f"Unsupported URL scheme `{url.scheme}` in {url.geturl()}: use http or https.")
        connection.blocksize = _CHUNK
        return connection


def operation_id_from(response: Response) -> str:
    """The operation id from an ``Operation-Location`` header (its last path segment)."""
    location = response.headers.get("operation-location")
    if not location:
        raise WebserviceException(
            "Missing response header key: Operation-Location", status_code=response.status
        )
    return location.rstrip("/").rsplit("/", 1)[-1]
