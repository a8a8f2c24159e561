#!/usr/bin/env python3
"""Berth worker shim: runs an Azure ML v1 entry script (``score.py``) behind the Berth worker protocol.

Started by the Berth supervisor as ``python3 -u berth_worker.py --socket PATH``. It connects to the
supervisor's Unix socket, says HELLO, imports the entry script, calls ``init()`` once, and then serves
SCORE / PING / SWAGGER frames strictly one at a time until SHUTDOWN or end of stream.

The wire format is specified in ``docs/worker-protocol.md`` (protocol version 1). The entry-script
contract reproduces azureml-inference-server-http 1.5.1 (see the same document for the deliberate
differences). Standard library only; Python 3.8+.

User ``print()`` output goes to stdout untouched; this shim's own diagnostics go to stderr, each line
prefixed with ``berth-worker:``.
"""

from __future__ import annotations

import _socket
import io
import os
import struct
import sys
import time

# What an idle replica holds is what it imported: modules needed only on rare paths (a failure's
# traceback, run() signatures other than plain functions, GET query strings, rawhttp responses,
# the compat modules' import hooks) are imported where they are used, and ``json`` (with ``re``
# and ``enum`` behind it) at the first request that needs it. ``_signal`` and ``_socket`` are the
# C modules ``signal`` and ``socket`` wrap (in enums, selectors, ...); the shim needs only their
# functions and constants.
try:
    import _signal as signal
except ImportError:  # pragma: no cover - interpreters without the C module
    import signal  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.machinery
    import json
    import socket
    import types
    from typing import (
        IO,
        Any,
        Callable,
        Dict,
        Iterable,
        Iterator,
        List,
        Mapping,
        Optional,
        Sequence,
        Tuple,
        Union,
    )

    HeaderPairs = List[Tuple[str, bytes]]

PROTOCOL_VERSION = 1
SHIM_VERSION = "1.0.0"
DEFAULT_MAX_FRAME = (1 << 30) + (64 << 10)

# Frame types, worker -> gateway.
T_HELLO = 0x01
T_INIT_OK = 0x02
T_INIT_FAILED = 0x03
T_SCORE_RESULT = 0x11
T_SCORE_EXPIRED = 0x13
T_PONG = 0x21
T_SWAGGER_RESULT = 0x31
# Frame types, gateway -> worker.
T_SCORE = 0x10
T_SCORE_BY = 0x12
T_PING = 0x20
T_SWAGGER = 0x30
T_SHUTDOWN = 0x40

MODE_RAW = 0
MODE_SCHEMA = 1
MODE_RAWHTTP = 2

STAGE_LOAD = 0
STAGE_CONTRACT = 1
STAGE_INIT = 2

FLAG_RUN_FAILED = 0x01
FLAG_RUN_RETURNED = 0x02

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INIT_FAILED = 3
EXIT_PROTOCOL = 4
EXIT_LIMITS = 5

MSG_RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
MSG_INTERNAL = "An unexpected internal error occurred. Check the logs for more info."
MSG_ROUTE_METHOD = "The method is not allowed for the requested URL."
MSG_INPUT_METHOD = "Method not allowed"

FORM_MIMETYPES = frozenset(("application/x-www-form-urlencoded", "multipart/form-data"))
MODEL_TREE_LINE_LIMIT = 200

_FRAME_HEAD = struct.Struct(">IB")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_SCORE_HEAD = struct.Struct(">QH")
_RESULT_HEAD = struct.Struct(">IBQHIB")
_RESULT_HEAD_LEN = _RESULT_HEAD.size - 4
_HELLO_HEAD = struct.Struct(">HI")
_INIT_OK = struct.Struct(">IBIB")
_PONG = struct.Struct(">IBQ")
_EXPIRED = _PONG  # length, type, seq
_START_BY = struct.Struct(">QQ")  # start_by (CLOCK_MONOTONIC ns), seq
_SWAGGER_HEAD = struct.Struct(">IBH")
_U32_MAX = 0xFFFFFFFF

_SHIM_FILE = os.path.abspath(__file__)
_ModuleType = type(sys)


class _LazyModule:
    """A module imported at its first attribute access (it then replaces this in the shim's globals)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = __import__(self._name)
        globals()[self._name] = module
        return getattr(module, attr)


traceback = _LazyModule("traceback")
json = _LazyModule("json")
socket = _LazyModule("socket")


class _Socket(_socket.socket):
    """The gateway connection: a socket of the C module with the one method of ``socket.socket``
    the shim uses, ``makefile`` (a buffered file over the descriptor, which stays the socket's)."""

    __slots__ = ()

    def makefile(self, mode: str = "rb", buffering: int = -1) -> IO[bytes]:
        return io.open(self.fileno(), mode, buffering=buffering, closefd=False)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------------


def diag(message: str) -> None:
    """Write a shim diagnostic to stderr, every line prefixed with ``berth-worker:``."""
    text = "".join(f"berth-worker: {line}\n" for line in message.rstrip("\n").split("\n"))
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def server_log(message: str, level: str = "I") -> None:
    """Write one start-up line to stderr in azmlinfsrv's log format
    (``%(asctime)s %(levelname).1s [%(process)d] azmlinfsrv - %(message)s``), so that a service's
    logs show what the reference server shows when it starts."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + ",%03d" % int((now % 1) * 1000)
    try:
        sys.stderr.write(f"{stamp} {level} [{os.getpid()}] azmlinfsrv - {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


_MODE_NOTES = {
    MODE_RAW: "run() is not decorated. Server will invoke it with the input in JSON string.",
    MODE_SCHEMA: "run() is decorated with @input_schema. Server will invoke it with the following arguments: {}.",
    MODE_RAWHTTP: "run() is decorated with @rawhttp. Server will invoke it with the raw request.",
}


def format_user_traceback(exc: BaseException) -> str:
    """Format ``exc`` without the frames of this shim and of importlib (users see their own code)."""
    te = traceback.TracebackException.from_exception(exc)
    kept = [
        frame
        for frame in te.stack
        if os.path.abspath(frame.filename) != _SHIM_FILE and not frame.filename.startswith("<frozen importlib")
    ]
    te.stack = traceback.StackSummary.from_list(kept)
    return "".join(te.format())


# --------------------------------------------------------------------------------------------------
# HTTP-shaped helpers that scripts observe (the subset of Werkzeug/Flask they use)
# --------------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """Raised by request helpers (``get_json``) like Werkzeug's BadRequest; inside run() it means 500."""

    code = 400

    def __init__(self, description: str, code: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.code = code


class Headers:
    """Case-insensitive, multi-valued header list (subset of ``werkzeug.datastructures.Headers``)."""

    __slots__ = ("_list",)

    def __init__(self, items: Union[None, Mapping[str, Any], Iterable[Tuple[str, Any]]] = None) -> None:
        self._list: List[Tuple[str, str]] = []
        if items is not None:
            self.extend(items)

    def __getitem__(self, key: Union[str, int]) -> Any:
        if isinstance(key, int):
            return self._list[key]
        ikey = key.lower()
        for name, value in self._list:
            if name.lower() == ikey:
                return value
        raise KeyError(key)

    def get(self, key: str, default: Any = None, type: Optional[Callable[[str], Any]] = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        if type is None:
            return value
        try:
            return type(value)
        except ValueError:
            return default

    def getlist(self, key: str, type: Optional[Callable[[str], Any]] = None) -> List[Any]:
        ikey = key.lower()
        values = [value for name, value in self._list if name.lower() == ikey]
        if type is None:
            return values
        out = []
        for value in values:
            try:
                out.append(type(value))
            except ValueError:
                continue
        return out

    get_all = getlist

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        ikey = key.lower()
        return any(name.lower() == ikey for name, _ in self._list)

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(list(self._list))

    def __len__(self) -> int:
        return len(self._list)

    def __bool__(self) -> bool:
        return bool(self._list)

    def keys(self, lower: bool = False) -> List[str]:
        return [name.lower() if lower else name for name, _ in self._list]

    def values(self) -> List[str]:
        return [value for _, value in self._list]

    def items(self, lower: bool = False) -> List[Tuple[str, str]]:
        return [(name.lower() if lower else name, value) for name, value in self._list]

    def add(self, key: str, value: Any) -> None:
        self._list.append((str(key), _header_value(value)))

    add_header = add

    def set(self, key: str, value: Any) -> None:
        self.remove(key)
        self._list.append((str(key), _header_value(value)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def remove(self, key: str) -> None:
        ikey = key.lower()
        self._list = [(name, value) for name, value in self._list if name.lower() != ikey]

    def __delitem__(self, key: str) -> None:
        self.remove(key)

    def pop(self, key: str, default: Any = KeyError) -> Any:
        try:
            value = self[key]
        except KeyError:
            if default is KeyError:
                raise
            return default
        self.remove(key)
        return value

    def setdefault(self, key: str, default: Any) -> Any:
        if key in self:
            return self[key]
        self.add(key, default)
        return self[key]

    def extend(self, items: Union[Mapping[str, Any], Iterable[Tuple[str, Any]]]) -> None:
        from collections.abc import Mapping

        pairs: Iterable[Tuple[str, Any]] = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            if isinstance(value, (list, tuple)):
                for item in value:
                    self.add(key, item)
            else:
                self.add(key, value)

    update = extend

    def to_wsgi_list(self) -> List[Tuple[str, str]]:
        return list(self._list)

    def copy(self) -> "Headers":
        return Headers(self._list)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and sorted(self._list) == sorted(other._list)

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\r\n" for name, value in self._list) + "\r\n"

    def __repr__(self) -> str:
        return f"Headers({self._list!r})"


def _header_value(value: Any) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError("Header values must not contain newline characters.")
    return text


class MultiDict(dict):  # type: ignore[type-arg]
    """A dict of lists where ``d[key]`` is the first value (subset of ``werkzeug.datastructures.MultiDict``)."""

    def __init__(self, pairs: Iterable[Tuple[str, Any]] = ()) -> None:
        super().__init__()
        for key, value in pairs:
            self.add(key, value)

    def add(self, key: str, value: Any) -> None:
        dict.setdefault(self, key, []).append(value)

    def __getitem__(self, key: str) -> Any:
        try:
            return dict.__getitem__(self, key)[0]
        except (KeyError, IndexError):
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, [value])

    def __iter__(self) -> Iterator[str]:
        return iter(dict.keys(self))

    def get(self, key: str, default: Any = None, type: Optional[Callable[[Any], Any]] = None) -> Any:
        try:
            value = self[key]
        except KeyError:
            return default
        if type is None:
            return value
        try:
            return type(value)
        except ValueError:
            return default

    def getlist(self, key: str, type: Optional[Callable[[Any], Any]] = None) -> List[Any]:
        values = list(dict.get(self, key, []))
        if type is None:
            return values
        out = []
        for value in values:
            try:
                out.append(type(value))
            except ValueError:
                continue
        return out

    def setlist(self, key: str, values: Iterable[Any]) -> None:
        dict.__setitem__(self, key, list(values))

    def items(self, multi: bool = False) -> List[Tuple[str, Any]]:  # type: ignore[override]
        if multi:
            return [(key, value) for key, values in dict.items(self) for value in values]
        return [(key, values[0]) for key, values in dict.items(self)]

    def values(self) -> List[Any]:  # type: ignore[override]
        return [values[0] for values in dict.values(self)]

    def lists(self) -> List[Tuple[str, List[Any]]]:
        return [(key, list(values)) for key, values in dict.items(self)]

    def to_dict(self, flat: bool = True) -> Dict[str, Any]:
        if flat:
            return {key: values[0] for key, values in dict.items(self)}
        return {key: list(values) for key, values in dict.items(self)}

    def copy(self) -> "MultiDict":
        return MultiDict(self.items(multi=True))

    def __repr__(self) -> str:
        return f"MultiDict({self.items(multi=True)!r})"


class FileStorage:
    """An uploaded file of a multipart request (subset of ``werkzeug.datastructures.FileStorage``)."""

    def __init__(self, data: bytes, filename: Optional[str], name: Optional[str], content_type: Optional[str]) -> None:
        self.stream = io.BytesIO(data)
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.headers = Headers({"Content-Type": content_type} if content_type else None)

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def save(self, dst: Union[str, os.PathLike, IO[bytes]], buffer_size: int = 16384) -> None:  # type: ignore[type-arg]
        if isinstance(dst, (str, os.PathLike)):
            with open(dst, "wb") as out:
                out.write(self.stream.getvalue())
        else:
            dst.write(self.stream.getvalue())

    def close(self) -> None:
        self.stream.close()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.stream)

    def __bool__(self) -> bool:
        return bool(self.filename)

    def __repr__(self) -> str:
        return f"<FileStorage: {self.filename!r} ({self.content_type!r})>"


class _UserAgent:
    def __init__(self, string: str) -> None:
        self.string = string

    def __str__(self) -> str:
        return self.string

    def __bool__(self) -> bool:
        return bool(self.string)


_TITLE_CACHE: Dict[str, str] = {}


def werkzeug_header_name(name: str) -> str:
    """``x-request-id`` -> ``X-Request-Id``, the way Werkzeug names WSGI ``HTTP_*`` headers."""
    title = _TITLE_CACHE.get(name)
    if title is None:
        title = name.replace("_", "-").title()
        if len(_TITLE_CACHE) < 4096:
            _TITLE_CACHE[name] = title
    return title


def werkzeug_headers(pairs: HeaderPairs) -> Dict[str, str]:
    """What ``dict(flask.request.headers)`` holds: Title-Case names, repeated headers joined with ','."""
    out: Dict[str, str] = {}
    for name, raw in pairs:
        key = werkzeug_header_name(name)
        value = raw.decode("latin-1")
        previous = out.get(key)
        out[key] = value if previous is None else previous + "," + value
    return out


def _mimetype(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _content_type(pairs: HeaderPairs) -> str:
    for name, value in pairs:
        if name == "content-type":
            return value.decode("latin-1")
    return ""


class AMLRequest:
    """The request object a ``@rawhttp`` run() receives (the parts of ``flask.Request`` scripts use)."""

    def __init__(
        self,
        method: str = "GET",
        query_string: bytes = b"",
        headers: Optional[HeaderPairs] = None,
        body: Union[bytes, memoryview] = b"",
        path: str = "/score",
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.script_root = ""
        self.query_string = bytes(query_string)
        self._header_pairs: HeaderPairs = list(headers or [])
        self.headers = Headers(werkzeug_headers(self._header_pairs))
        self._body = bytes(body)
        self._cached = False
        self._stream_consumed = False
        self._args: Optional[MultiDict] = None
        self._form: Optional[MultiDict] = None
        self._files: Optional[MultiDict] = None
        self._json_cache: Any = _MISSING
        self._environ: Optional[Dict[str, Any]] = None

    # -- URL parts ---------------------------------------------------------------------------------
    @property
    def args(self) -> MultiDict:
        if self._args is None:
            self._args = MultiDict(_parse_query(self.query_string))
        return self._args

    @property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def scheme(self) -> str:
        return "http"

    @property
    def is_secure(self) -> bool:
        return False

    @property
    def host(self) -> str:
        return self.headers.get("Host", "localhost")

    @property
    def host_url(self) -> str:
        return f"{self.scheme}://{self.host}/"

    @property
    def url_root(self) -> str:
        return self.host_url

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def url(self) -> str:
        if self.query_string:
            return f"{self.base_url}?{self.query_string.decode('latin-1')}"
        return self.base_url

    @property
    def remote_addr(self) -> Optional[str]:
        return None

    @property
    def access_route(self) -> List[str]:
        forwarded = self.headers.get("X-Forwarded-For")
        return [part.strip() for part in forwarded.split(",")] if forwarded else []

    # -- headers -----------------------------------------------------------------------------------
    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("Content-Type")

    @property
    def mimetype(self) -> str:
        return _mimetype(self.content_type or "")

    @property
    def mimetype_params(self) -> Dict[str, str]:
        params: Dict[str, str] = {}
        for part in (self.content_type or "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip():
                params[key.strip().lower()] = value.strip().strip('"')
        return params

    @property
    def content_length(self) -> Optional[int]:
        value = self.headers.get("Content-Length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def content_encoding(self) -> Optional[str]:
        return self.headers.get("Content-Encoding")

    @property
    def user_agent(self) -> _UserAgent:
        return _UserAgent(self.headers.get("User-Agent", ""))

    @property
    def cookies(self) -> MultiDict:
        from http.cookies import SimpleCookie

        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except Exception:
            pass
        return MultiDict((key, morsel.value) for key, morsel in jar.items())

    @property
    def is_json(self) -> bool:
        return _is_json_mimetype(self.mimetype)

    # -- body --------------------------------------------------------------------------------------
    def _is_form(self) -> bool:
        return self.mimetype in FORM_MIMETYPES

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> Any:
        if parse_form_data and not self._cached:
            self._load_form_data()
        if self._stream_consumed and not self._cached:
            data = b""
        else:
            data = self._body
            if cache:
                self._cached = True
        return data.decode("utf-8", "replace") if as_text else data

    @property
    def data(self) -> bytes:
        return self.get_data(parse_form_data=True)

    @property
    def stream(self) -> io.BytesIO:
        return io.BytesIO(self.get_data())

    input_stream = stream

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if cache and self._json_cache is not _MISSING:
            return self._json_cache
        if not (force or self.is_json):
            if silent:
                return None
            raise BadRequest(
                "Did not attempt to load JSON data because the request Content-Type was not 'application/json'.",
                415,
            )
        try:
            value = json.loads(self.get_data(cache=cache))
        except ValueError as ex:
            if silent:
                return None
            raise BadRequest(f"Failed to decode JSON object: {ex}") from None
        if cache:
            self._json_cache = value
        return value

    @property
    def json(self) -> Any:
        return self.get_json()

    def _load_form_data(self) -> None:
        if self._form is not None:
            return
        self._form = MultiDict()
        self._files = MultiDict()
        if not self._is_form():
            return
        body = self._body
        if not self._cached:
            self._stream_consumed = True
        if self.mimetype == "application/x-www-form-urlencoded":
            from urllib.parse import parse_qsl

            self._form = MultiDict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        else:
            self._form, self._files = _parse_multipart(self.content_type or "", body)

    @property
    def form(self) -> MultiDict:
        self._load_form_data()
        assert self._form is not None
        return self._form

    @property
    def files(self) -> MultiDict:
        self._load_form_data()
        assert self._files is not None
        return self._files

    @property
    def values(self) -> MultiDict:
        combined = MultiDict(self.args.items(multi=True))
        if self.method != "GET":
            for key, value in self.form.items(multi=True):
                combined.add(key, value)
        return combined

    @property
    def environ(self) -> Dict[str, Any]:
        if self._environ is None:
            env: Dict[str, Any] = {
                "REQUEST_METHOD": self.method,
                "SCRIPT_NAME": "",
                "PATH_INFO": self.path,
                "QUERY_STRING": self.query_string.decode("latin-1"),
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": self.scheme,
                "wsgi.input": io.BytesIO(self._body),
            }
            for name, raw in self._header_pairs:
                key = name.upper().replace("-", "_")
                if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    key = "HTTP_" + key
                value = raw.decode("latin-1")
                env[key] = value if key not in env else f"{env[key]},{value}"
            self._environ = env
        return self._environ

    def __repr__(self) -> str:
        return f"<AMLRequest {self.url!r} [{self.method}]>"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _parse_query(query: bytes) -> List[Tuple[str, str]]:
    if not query:
        return []
    from urllib.parse import parse_qsl

    return parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True, errors="replace")


def _parse_multipart(content_type: str, body: bytes) -> Tuple[MultiDict, MultiDict]:
    import email.parser
    import email.policy
    import email.utils

    form = MultiDict()
    files = MultiDict()
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return form, files
    for part in message.iter_parts():  # type: ignore[attr-defined]
        param = part.get_param("name", header="content-disposition")
        if param is None:
            continue
        name = email.utils.collapse_rfc2231_value(param)
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        filename = part.get_filename()
        if filename is not None:
            files.add(name, FileStorage(payload, filename, name, part.get("Content-Type")))
        else:
            charset = part.get_content_charset() or "utf-8"
            form.add(name, payload.decode(charset, "replace"))
    return form, files


def _status_line(code: int) -> str:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(code).phrase.upper()
    except ValueError:
        phrase = "UNKNOWN"
    return f"{code} {phrase}"


def _body_bytes(message: Any) -> bytes:
    if isinstance(message, str):
        return message.encode("utf-8")
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    if isinstance(message, (list, tuple)) and all(isinstance(item, (str, bytes)) for item in message):
        return b"".join(item.encode("utf-8") if isinstance(item, str) else item for item in message)
    # Werkzeug would iterate an arbitrary object; serialising it is the useful reading.
    return json.dumps(message).encode("utf-8")


class AMLResponse:
    """A response run() may return (``AMLResponse(body, status, headers, json_str=False)``).

    Comma-separated header values become repeated headers, as in azureml-inference-server-http.
    """

    default_mimetype = "text/html"

    def __init__(
        self,
        message: Any,
        status_code: Union[int, str],
        response_headers: Optional[Mapping[str, Any]] = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        response_headers = response_headers if response_headers is not None else {}
        self.headers = Headers()
        user_sets_type = any(str(key).lower() == "content-type" for key in response_headers)
        if message is None:
            self._data = b"{}"
            self.headers.add("Content-Type", "application/json")
        elif json_str:
            self._data = json.dumps(message).encode("utf-8")
            if not user_sets_type:
                self.headers.add("Content-Type", "application/json")
        else:
            self._data = _body_bytes(message)
            if not user_sets_type:
                self.headers.add("Content-Type", "text/html; charset=utf-8")
        self.headers["x-ms-run-function-failed"] = run_function_failed
        for header, value in response_headers.items():
            for item in str(value).split(","):
                self.headers.add(header, item.strip())
        self.status_code = status_code  # type: ignore[assignment]

    @property
    def status_code(self) -> int:
        return self._status_code

    @status_code.setter
    def status_code(self, value: Union[int, str]) -> None:
        # An int (HTTPStatus too) or a status line such as "201 CREATED", like Werkzeug accepts.
        self._status_code = int(value) if isinstance(value, int) else int(str(value).split(None, 1)[0])

    @property
    def status(self) -> str:
        return _status_line(self._status_code)

    @status.setter
    def status(self, value: Union[int, str]) -> None:
        self.status_code = value

    def get_data(self, as_text: bool = False) -> Any:
        return self._data.decode("utf-8", "replace") if as_text else self._data

    def set_data(self, value: Union[str, bytes]) -> None:
        self._data = _body_bytes(value)

    @property
    def data(self) -> bytes:
        return self._data

    @data.setter
    def data(self, value: Union[str, bytes]) -> None:
        self.set_data(value)

    @property
    def response(self) -> List[bytes]:
        return [self._data]

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("Content-Type")

    @content_type.setter
    def content_type(self, value: str) -> None:
        self.headers["Content-Type"] = value

    @property
    def mimetype(self) -> str:
        return _mimetype(self.content_type or "")

    @mimetype.setter
    def mimetype(self, value: str) -> None:
        self.headers["Content-Type"] = value

    @property
    def content_length(self) -> int:
        return len(self._data)

    @property
    def is_json(self) -> bool:
        return _is_json_mimetype(self.mimetype)

    def get_json(self, force: bool = False, silent: bool = False) -> Any:
        if not (force or self.is_json):
            return None
        try:
            return json.loads(self._data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self._data)} bytes [{self.status}]>"


_RAW_HTTP_REQUESTED = [False]


def rawhttp(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate run() to receive the raw request (an AMLRequest) instead of the body string."""
    _RAW_HTTP_REQUESTED[0] = True
    for name in ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__berth_compat__", False):
            module._rawHttpRequested = True  # type: ignore[attr-defined]
    return func


# --------------------------------------------------------------------------------------------------
# Model.get_model_path (azureml.core.model) resolved from AZUREML_MODEL_DIR
# --------------------------------------------------------------------------------------------------


class WebserviceException(Exception):
    """Stand-in for ``azureml.exceptions.WebserviceException``."""

    def __init__(self, exception_message: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(exception_message)
        self.message = exception_message


class ModelNotFoundException(WebserviceException):
    """Stand-in for ``azureml.exceptions.ModelNotFoundException``."""


def _single_entry(version_dir: str) -> str:
    entries = sorted(os.listdir(version_dir))
    if len(entries) != 1:
        raise WebserviceException(f"Dir {version_dir} can contain only 1 file or folder. Found {entries}")
    return os.path.join(version_dir, entries[0])


def _latest_version(model_dir: str) -> Optional[int]:
    versions = []
    for entry in os.listdir(model_dir):
        try:
            versions.append(int(entry))
        except ValueError:
            continue
    return max(versions) if versions else None


def _resolve_in_root(root: str, model_name: str, version: Optional[int]) -> Optional[str]:
    """``<root>/<name>/<version or latest>/<single entry>``, or None when that layout is absent."""
    model_dir = os.path.join(root, model_name)
    if not os.path.isdir(model_dir):
        return None
    chosen = version if version is not None else _latest_version(model_dir)
    if chosen is None:
        return None
    version_dir = os.path.join(model_dir, str(chosen))
    if not os.path.isdir(version_dir):
        return None
    return _single_entry(version_dir)


class Model:
    """Stand-in for ``azureml.core.model.Model`` inside a scoring worker: only ``get_model_path``."""

    @staticmethod
    def get_model_path(model_name: str, version: Optional[int] = None, _workspace: Any = None) -> str:
        if version is not None and not isinstance(version, int):
            raise WebserviceException("version should be an int")
        if model_name is None:
            raise WebserviceException("model_name is None")
        model_dir = os.environ.get("AZUREML_MODEL_DIR", "")
        roots: List[str] = []
        if model_dir:
            # Several models: AZUREML_MODEL_DIR holds <name>/<version>/.
            roots.append(model_dir)
            # One model: AZUREML_MODEL_DIR is .../<name>/<version> itself.
            normalized = os.path.normpath(model_dir)
            parent = os.path.dirname(normalized)
            if os.path.basename(parent) == model_name and (
                version is None or os.path.basename(normalized) == str(version)
            ):
                roots.insert(0, os.path.dirname(parent))
        app_root = os.environ.get("AML_APP_ROOT") or os.getcwd()
        roots.append(os.path.join(app_root, "azureml-models"))
        for root in roots:
            found = _resolve_in_root(root, model_name, version)
            if found is not None:
                return found
        if version is None and os.path.exists(model_name):
            return model_name
        raise ModelNotFoundException(
            f"Model {model_name} not found in cache at {model_dir or roots[-1]} or in current working "
            f"directory {os.getcwd()}. For more info, set logging level to DEBUG."
        )


# --------------------------------------------------------------------------------------------------
# Compatibility modules, served only when the real packages cannot be imported
# --------------------------------------------------------------------------------------------------


def _compat_request_module(module: types.ModuleType) -> None:
    module.rawhttp = rawhttp  # type: ignore[attr-defined]
    module.AMLRequest = AMLRequest  # type: ignore[attr-defined]
    module._rawHttpRequested = _RAW_HTTP_REQUESTED[0]  # type: ignore[attr-defined]


def _compat_response_module(module: types.ModuleType) -> None:
    module.AMLResponse = AMLResponse  # type: ignore[attr-defined]


def _compat_model_module(module: types.ModuleType) -> None:
    module.Model = Model  # type: ignore[attr-defined]


def _compat_core_module(module: types.ModuleType) -> None:
    module.Model = Model  # type: ignore[attr-defined]


def _compat_exceptions_module(module: types.ModuleType) -> None:
    module.WebserviceException = WebserviceException  # type: ignore[attr-defined]
    module.ModelNotFoundException = ModelNotFoundException  # type: ignore[attr-defined]


def _nothing(module: types.ModuleType) -> None:
    return None


# name -> (is_package, populate)
_COMPAT_MODULES: Dict[str, Tuple[bool, Callable[[types.ModuleType], None]]] = {
    "azureml": (True, _nothing),
    "azureml.contrib": (True, _nothing),
    "azureml.contrib.services": (True, _nothing),
    "azureml.contrib.services.aml_request": (False, _compat_request_module),
    "azureml.contrib.services.aml_response": (False, _compat_response_module),
    "azureml.core": (True, _compat_core_module),
    "azureml.core.model": (False, _compat_model_module),
    "azureml.exceptions": (False, _compat_exceptions_module),
    "azureml_inference_server_http": (True, _nothing),
    "azureml_inference_server_http.api": (True, _nothing),
    "azureml_inference_server_http.api.aml_request": (False, _compat_request_module),
    "azureml_inference_server_http.api.aml_response": (False, _compat_response_module),
}


class _CompatLoader:
    """The loader of the compat modules (the import system needs only these two methods)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        _, populate = _COMPAT_MODULES[module.__name__]
        module.__berth_compat__ = True  # type: ignore[attr-defined]
        populate(module)


class _CompatFinder:
    """Last entry of ``sys.meta_path``: real packages on ``sys.path`` always win."""

    _loader = _CompatLoader()

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[types.ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        entry = _COMPAT_MODULES.get(fullname)
        if entry is None:
            return None
        from importlib.machinery import ModuleSpec

        spec = ModuleSpec(fullname, self._loader, is_package=entry[0])
        if entry[0]:
            spec.submodule_search_locations = []
        return spec


def install_compat_modules() -> None:
    if not any(isinstance(finder, _CompatFinder) for finder in sys.meta_path):
        sys.meta_path.append(_CompatFinder())


def raw_http_requested() -> bool:
    if _RAW_HTTP_REQUESTED[0]:
        return True
    for name in ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_rawHttpRequested", False):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """The byte stream does not follow the protocol; the worker exits with code 4."""


def frame(frame_type: int, *parts: bytes) -> bytes:
    length = 1 + sum(len(part) for part in parts)
    return b"".join((_FRAME_HEAD.pack(length, frame_type), *parts))


def str16(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raw = raw[:0xFFFF].decode("utf-8", "ignore").encode("utf-8")
    return _U16.pack(len(raw)) + raw


def headers_block(pairs: Sequence[Tuple[str, bytes]]) -> bytes:
    parts = [_U16.pack(len(pairs))]
    for name, value in pairs:
        raw_name = name.encode("latin-1")
        parts.append(_U16.pack(len(raw_name)))
        parts.append(raw_name)
        parts.append(_U32.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


class Connection:
    """The worker end of the socket: exact reads through a buffered file, one ``sendall`` per frame."""

    def __init__(self, sock: socket.socket, max_frame: int) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self.reader = sock.makefile("rb", buffering=256 * 1024)
        self.send = sock.sendall

    def read_frame(self) -> Optional[Tuple[int, bytes]]:
        head = self.reader.read(5)
        if not head:
            return None
        if len(head) < 5:
            raise ProtocolError("stream ended inside a frame header")
        length, frame_type = _FRAME_HEAD.unpack(head)
        if length == 0:
            raise ProtocolError("frame length 0")
        if length > self.max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds the maximum of {self.max_frame}")
        payload = self.reader.read(length - 1) if length > 1 else b""
        if len(payload) != length - 1:
            raise ProtocolError("stream ended inside a frame")
        return frame_type, payload

    def close(self) -> None:
        for closer in (self.reader.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass


class ScoreFrame:
    """A decoded SCORE payload. ``body`` is a memoryview into the frame (no copy)."""

    __slots__ = ("seq", "method", "request_id", "query", "headers", "body")

    def __init__(self, payload: bytes, start: int = 0) -> None:
        try:
            seq, method_len = _SCORE_HEAD.unpack_from(payload, start)
            pos = start + 10
            self.seq: int = seq
            self.method: str = payload[pos : pos + method_len].decode("utf-8")
            pos += method_len
            (id_len,) = _U16.unpack_from(payload, pos)
            pos += 2
            self.request_id: str = payload[pos : pos + id_len].decode("utf-8")
            pos += id_len
            (query_len,) = _U32.unpack_from(payload, pos)
            pos += 4
            self.query: bytes = payload[pos : pos + query_len]
            pos += query_len
            (count,) = _U16.unpack_from(payload, pos)
            pos += 2
            headers: HeaderPairs = []
            for _ in range(count):
                (name_len,) = _U16.unpack_from(payload, pos)
                pos += 2
                name = payload[pos : pos + name_len].decode("utf-8")
                pos += name_len
                (value_len,) = _U32.unpack_from(payload, pos)
                pos += 4
                headers.append((name, payload[pos : pos + value_len]))
                pos += value_len
        except (struct.error, UnicodeDecodeError) as ex:
            raise ProtocolError(f"malformed SCORE frame: {ex}") from None
        if pos > len(payload):
            raise ProtocolError("malformed SCORE frame: fields run past the end of the frame")
        self.headers: HeaderPairs = headers
        self.body = memoryview(payload)[pos:]


# --------------------------------------------------------------------------------------------------
# Responses on the wire
# --------------------------------------------------------------------------------------------------

_JSON_HEADERS = headers_block([("content-type", b"application/json")])
_HTML_HEADERS = headers_block([("content-type", b"text/html; charset=utf-8")])
_OCTET_HEADERS = headers_block([("content-type", b"application/octet-stream")])
_DROPPED_RESPONSE_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "x-ms-run-function-failed"))


def result_frame(seq: int, status: int, exec_us: int, flags: int, headers: bytes, body: bytes) -> bytes:
    length = _RESULT_HEAD_LEN + len(headers) + len(body)
    head = _RESULT_HEAD.pack(length, T_SCORE_RESULT, seq, status, exec_us, flags)
    return b"".join((head, headers, body))


def error_frame(seq: int, status: int, message: str, flags: int = 0) -> bytes:
    body = json.dumps({"message": message}).encode("utf-8")
    return result_frame(seq, status, 0, flags, _JSON_HEADERS, body)


def _encode_header_value(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def response_parts(response: Any) -> Tuple[int, int, bytes, bytes]:
    """(status, flags, headers block, body) of an AMLResponse or any Flask/Werkzeug-like response."""
    if isinstance(response, AMLResponse):
        status = response.status_code
        pairs = response.headers.to_wsgi_list()
        body = response.get_data()
    else:
        status = int(response.status_code)
        pairs = [(str(name), str(value)) for name, value in response.headers]
        body = response.get_data()
    flags = 0
    wire: List[Tuple[str, bytes]] = []
    for name, value in pairs:
        lower = name.lower()
        if lower in _DROPPED_RESPONSE_HEADERS:
            if lower == "x-ms-run-function-failed" and str(value).lower() == "true":
                flags |= FLAG_RUN_FAILED
            continue
        wire.append((lower, _encode_header_value(str(value))))
    if status >= 500:
        flags |= FLAG_RUN_FAILED
    return status, flags, headers_block(wire), bytes(body)


def is_response(value: Any) -> bool:
    if isinstance(value, AMLResponse):
        return True
    return hasattr(value, "status_code") and hasattr(value, "headers") and callable(getattr(value, "get_data", None))


# --------------------------------------------------------------------------------------------------
# The entry script
# --------------------------------------------------------------------------------------------------


# Parameter kinds, the values of ``inspect.Parameter.kind`` (``inspect._ParameterKind``).
KIND_POSITIONAL_ONLY = 0
KIND_POSITIONAL_OR_KEYWORD = 1
KIND_VAR_POSITIONAL = 2
KIND_KEYWORD_ONLY = 3
KIND_VAR_KEYWORD = 4
_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_FunctionType = type(diag)


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


NO_DEFAULT: Any = _NoDefault()


class RunParam:
    """One parameter of run(): what ``inspect.Parameter`` says of it (``NO_DEFAULT`` for none)."""

    __slots__ = ("name", "kind", "default")

    def __init__(self, name: str, kind: int, default: Any) -> None:
        self.name = name
        self.kind = kind
        self.default = default


def run_parameters(fn: Any) -> List[RunParam]:
    """The parameters of ``fn`` as ``inspect.signature`` lists them.

    A plain function (no ``__wrapped__`` or ``__signature__``) without positional-only, ``*args``
    or ``**kwargs`` parameters is read from its code object; anything else goes through
    ``inspect.signature`` (raising its TypeError/ValueError)."""
    code = getattr(fn, "__code__", None)
    attrs = getattr(fn, "__dict__", None)
    if (
        type(fn) is _FunctionType
        and code is not None
        and not getattr(code, "co_posonlyargcount", 0)
        and not code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS)
        and not (attrs and ("__wrapped__" in attrs or "__signature__" in attrs))
    ):
        names = code.co_varnames
        positional = code.co_argcount
        defaults = fn.__defaults__ or ()
        kwdefaults = fn.__kwdefaults__ or {}
        first_default = positional - len(defaults)
        params = [
            RunParam(
                names[i],
                KIND_POSITIONAL_OR_KEYWORD,
                defaults[i - first_default] if i >= first_default else NO_DEFAULT,
            )
            for i in range(positional)
        ]
        for name in names[positional : positional + code.co_kwonlyargcount]:
            params.append(RunParam(name, KIND_KEYWORD_ONLY, kwdefaults.get(name, NO_DEFAULT)))
        return params
    import inspect

    return [
        RunParam(p.name, int(p.kind), NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(fn).parameters.values()
    ]


class InitFailure(Exception):
    def __init__(self, stage: int, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


class ScoringTimeout(TimeoutError):
    """Raised inside run() by SIGALRM when SCORING_TIMEOUT_MS elapses (a TimeoutError, as in the reference)."""


class UserScript:
    """Loads the entry script, checks its contract, and turns SCORE frames into result frames."""

    def __init__(self, app_root: str, entry_script: Optional[str], source_dir: Optional[str]) -> None:
        self.app_root = app_root
        self.entry_script = entry_script
        self.source_dir = os.path.join(app_root, source_dir) if source_dir else None
        self.module: Optional[types.ModuleType] = None
        self.init_fn: Callable[[], Any] = lambda: None
        self.run_fn: Callable[..., Any] = lambda: None
        self.input_name = ""
        self.has_request_headers = False
        self.schema_params: List[RunParam] = []
        self.mode = MODE_RAW
        self.timeout_ms = 0
        self._in_run = False
        self._swagger: Optional[Dict[str, Any]] = None
        self._swagger_versions: List[str] = []

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        try:
            module = self._import()
        except BaseException as ex:  # the reference server treats anything raised at import as fatal
            raise InitFailure(
                STAGE_LOAD,
                "Failed to import user script because it raised an unhandled exception\n" + format_user_traceback(ex),
            ) from None
        self.module = module
        location = getattr(module, "__file__", self.entry_script or "main")
        if not hasattr(module, "init"):
            raise InitFailure(STAGE_CONTRACT, f"User script at {location} does not have a init() function defined.")
        if not hasattr(module, "run"):
            raise InitFailure(STAGE_CONTRACT, f"User script at {location} does not have a run() function defined.")
        driver = getattr(module, "driver_module", None)
        if isinstance(driver, _ModuleType) and hasattr(driver, "run"):
            self.run_fn = driver.run
            diag(f"found driver script at {location} and the score script at {getattr(driver, '__file__', '?')}")
        else:
            self.run_fn = module.run
        self.init_fn = module.init
        self._analyze_run()

    def location(self) -> str:
        """Where the entry script was loaded from."""
        return str(getattr(self.module, "__file__", None) or self.entry_script or "main")

    def _import(self) -> types.ModuleType:
        import importlib

        if not self.entry_script:
            return importlib.import_module("main")
        try:
            # The functions importlib.util re-exports, without the modules importlib.util imports.
            from importlib._bootstrap import module_from_spec
            from importlib._bootstrap_external import spec_from_file_location
        except ImportError:  # pragma: no cover - an importlib laid out otherwise
            from importlib.util import module_from_spec, spec_from_file_location
        location = os.path.join(self.app_root, self.entry_script.replace("/", os.sep))
        spec = spec_from_file_location("entry_module", location)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the entry script {location} (is it a .py file?)")
        module = module_from_spec(spec)
        sys.modules["entry_module"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop("entry_module", None)
            raise
        return module

    def _analyze_run(self) -> None:
        try:
            params = run_parameters(self.run_fn)
        except (TypeError, ValueError) as ex:
            raise InitFailure(STAGE_CONTRACT, f"run() signature cannot be inspected: {ex}") from None
        allowed = (KIND_KEYWORD_ONLY, KIND_POSITIONAL_OR_KEYWORD)
        if any(param.kind not in allowed for param in params):
            raise InitFailure(STAGE_CONTRACT, "run() cannot accept positional-only arguments, *args, or **kwargs.")
        self.has_request_headers = any(param.name == "request_headers" for param in params)
        params = [param for param in params if param.name != "request_headers"]
        if not params:
            if self.has_request_headers:
                raise InitFailure(STAGE_CONTRACT, 'run() needs to accept an argument other than "request_headers".')
            raise InitFailure(STAGE_CONTRACT, "run() needs to accept an argument for input data.")
        self.input_name = params[0].name
        raw_http = raw_http_requested()
        schema = self._schema_decorated()
        if raw_http and schema:
            raise InitFailure(STAGE_CONTRACT, "run() cannot be decorated with both @rawhttp and @input_schema")
        if raw_http:
            self.mode = MODE_RAWHTTP
        elif schema:
            self.mode = MODE_SCHEMA
            self.schema_params = params
        else:
            self.mode = MODE_RAW

    def _schema_util(self) -> Optional[types.ModuleType]:
        if "inference_schema" not in sys.modules:
            return None  # run() cannot be decorated by a package nobody imported
        try:
            import inference_schema.schema_util as schema_util  # type: ignore[import-not-found]
        except Exception:
            return None
        return schema_util

    def _schema_decorated(self) -> bool:
        schema_util = self._schema_util()
        if schema_util is None:
            return False
        try:
            return bool(schema_util.is_schema_decorated(self.run_fn))
        except Exception:
            return False

    def invoke_init(self) -> None:
        try:
            self.init_fn()
        except BaseException as ex:
            raise InitFailure(STAGE_INIT, "init() raised an exception\n" + format_user_traceback(ex)) from None

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, request: ScoreFrame) -> bytes:
        method = request.method
        if method not in ("GET", "POST", "OPTIONS", "HEAD"):
            return error_frame(request.seq, 405, MSG_ROUTE_METHOD)
        if self.mode == MODE_RAW:
            if method == "POST":
                if _mimetype(_content_type(request.headers)) in FORM_MIMETYPES:
                    data = ""
                else:
                    try:
                        data = str(request.body, "utf-8")
                    except UnicodeDecodeError as ex:
                        return error_frame(request.seq, 400, f"Input cannot be decoded as UTF-8: {ex}")
            elif method == "GET":
                data = json.dumps(parse_get_params(request.query))
            elif method == "OPTIONS":
                return result_frame(request.seq, 200, 0, 0, _HTML_HEADERS, b"")
            else:
                return error_frame(request.seq, 405, MSG_INPUT_METHOD)
            kwargs: Dict[str, Any] = {self.input_name: data}
        elif self.mode == MODE_RAWHTTP:
            kwargs = {self.input_name: AMLRequest(method, request.query, request.headers, request.body)}
        else:
            parsed = self._schema_input(request)
            if isinstance(parsed, bytes):
                return parsed
            kwargs = parsed
        if self.has_request_headers:
            kwargs["request_headers"] = werkzeug_headers(request.headers)
        return self._call_run(request, kwargs)

    def _schema_input(self, request: ScoreFrame) -> Union[bytes, Dict[str, Any]]:
        if request.method == "GET":
            body: Any = parse_get_params(request.query)
        elif request.method == "POST":
            if not _is_json_mimetype(_mimetype(_content_type(request.headers))):
                return error_frame(request.seq, 415, "Expects Content-Type to be application/json")
            raw = bytes(request.body)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as ex:
                if raw:
                    return error_frame(request.seq, 400, f"POST body could not be decoded as JSON: {ex}")
                return error_frame(request.seq, 400, "POST body is empty. Expecting a JSON dictionary.")
            if not isinstance(body, dict):
                return error_frame(request.seq, 400, "POST body should be a JSON dictionary.")
        elif request.method == "OPTIONS":
            return result_frame(request.seq, 200, 0, 0, _HTML_HEADERS, b"")
        else:
            return error_frame(request.seq, 405, MSG_INPUT_METHOD)
        kwargs: Dict[str, Any] = {}
        for param in self.schema_params:
            value = body.get(param.name, param.default)
            if value is NO_DEFAULT:
                return error_frame(request.seq, 400, f"A value is not provided for the {param.name!r} parameter.")
            kwargs[param.name] = value
        return kwargs

    def _call_run(self, request: ScoreFrame, kwargs: Dict[str, Any]) -> bytes:
        timeout_ms = self.timeout_ms
        start = time.perf_counter_ns()
        try:
            if timeout_ms:
                self._in_run = True
                signal.setitimer(signal.ITIMER_REAL, timeout_ms / 1000.0)
                try:
                    output = self.run_fn(**kwargs)
                finally:
                    self._in_run = False
                    signal.setitimer(signal.ITIMER_REAL, 0)
            else:
                output = self.run_fn(**kwargs)
        except TimeoutError:
            diag(f"request {request.request_id}: run() timed out\n{traceback.format_exc()}")
            return error_frame(request.seq, 500, f"Scoring timeout after {timeout_ms} ms", FLAG_RUN_FAILED)
        except Exception:
            sys.stderr.write(f"berth-worker: request {request.request_id}: run() raised an exception\n")
            sys.stderr.write(traceback.format_exc())
            sys.stderr.flush()
            return error_frame(request.seq, 500, MSG_RUN_FAILED, FLAG_RUN_FAILED)
        exec_us = min((time.perf_counter_ns() - start) // 1000, _U32_MAX)
        if is_response(output):
            status, flags, headers, body = response_parts(output)
            return result_frame(request.seq, status, exec_us, flags | FLAG_RUN_RETURNED, headers, body)
        if isinstance(output, (bytes, bytearray, memoryview)):
            return result_frame(request.seq, 200, exec_us, FLAG_RUN_RETURNED, _OCTET_HEADERS, bytes(output))
        body_bytes = b"{}" if output is None else json.dumps(output).encode("utf-8")
        return result_frame(request.seq, 200, exec_us, FLAG_RUN_RETURNED, _JSON_HEADERS, body_bytes)

    def on_alarm(self, signum: int, frame_: Any) -> None:
        if self._in_run:
            raise ScoringTimeout()

    # -- swagger -----------------------------------------------------------------------------------
    def swagger(self, version: str) -> Tuple[int, bytes]:
        if not version:
            version = "2"
        if self._swagger is None:
            self._swagger, self._swagger_versions = build_swaggers(self)
        supported = ", ".join(sorted(self._swagger_versions))
        if version not in _SWAGGER_ALIASES:
            message = f"Swagger version [{version}] is not valid. Supported versions: [{supported}]."
            return 404, json.dumps({"message": message}).encode("utf-8")
        document = self._swagger.get(version)
        if not document:
            message = (
                f"Swagger version [{version}] is not supported for the scoring script. "
                f"Supported swagger versions: [{supported}]."
            )
            return 404, json.dumps({"message": message}).encode("utf-8")
        return 200, json.dumps(document).encode("utf-8")


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_get_params(query: bytes) -> Dict[str, Any]:
    """Query args JSON-decoded per value (else kept as text); a repeated key becomes a list."""
    grouped: Dict[str, List[str]] = {}
    for key, value in _parse_query(query):
        grouped.setdefault(key, []).append(value)
    return {
        key: _json_or_text(values[0]) if len(values) == 1 else [_json_or_text(v) for v in values]
        for key, values in grouped.items()
    }


# --------------------------------------------------------------------------------------------------
# Swagger
# --------------------------------------------------------------------------------------------------

# builder version -> aliases served from it, and the user file that overrides it (in order)
_SWAGGER_BUILDERS: List[Tuple[str, Tuple[str, ...], Tuple[str, ...]]] = [
    ("2", ("2", "2.0"), ("swagger.json", "swagger2.json")),
    ("3", ("3", "3.0"), ("swagger3.json",)),
    ("3.1", ("3.1",), ("swagger3.1.json",)),
]
_SWAGGER_ALIASES = frozenset(alias for _, aliases, _ in _SWAGGER_BUILDERS for alias in aliases)
_EMPTY_SCHEMA: Dict[str, Any] = {"type": "object", "example": {}}
_ALL_SCHEMA_VERSIONS = ("2.0", "3.0", "3.1")


def _error_response_schema() -> Dict[str, Any]:
    return {"type": "object", "properties": {"message": {"type": "string"}}}


def _swagger_document(version: str, input_schema: Any, output_schema: Any) -> Dict[str, Any]:
    name = os.environ.get("SERVICE_NAME", "ML service")
    service_version = os.environ.get("SERVICE_VERSION", "1.0")
    prefix_setting = os.environ.get("SERVICE_PATH_PREFIX", "")
    prefix = f"/{prefix_setting.strip('/')}" if prefix_setting else ""
    info = {
        "title": name,
        "description": f"API specification for the Azure Machine Learning service {name}",
        "version": service_version,
    }
    bearer = {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "description": "For example: Bearer abc123",
    }
    health_description = "If service is up and running, this response will be returned with the content 'Healthy'"
    failed = "The service failed to execute due to an error."
    score_ok = "The service processed the input correctly and provided a result prediction, if applicable."
    payload_description = "The input payload for executing the real-time machine learning service."
    if version == "2":
        error_ref = {"$ref": "#/definitions/ErrorResponse"}
        return {
            "swagger": "2.0",
            "info": info,
            "schemes": ["https"],
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "securityDefinitions": {"Bearer": bearer},
            "paths": {
                f"{prefix}/": {
                    "get": {
                        "operationId": "ServiceHealthCheck",
                        "description": "Simple health check endpoint to ensure the service is up at any given point.",
                        "responses": {
                            "200": {
                                "description": health_description,
                                "schema": {"type": "string"},
                                "examples": {"application/json": "Healthy"},
                            },
                            "default": {"description": failed, "schema": error_ref},
                        },
                    }
                },
                f"{prefix}/score": {
                    "post": {
                        "operationId": "RunMLService",
                        "description": "Run web service's model and get the prediction output",
                        "security": [{"Bearer": []}],
                        "parameters": [
                            {
                                "name": "serviceInputPayload",
                                "in": "body",
                                "description": payload_description,
                                "schema": {"$ref": "#/definitions/ServiceInput"},
                            }
                        ],
                        "responses": {
                            "200": {"description": score_ok, "schema": {"$ref": "#/definitions/ServiceOutput"}},
                            "default": {"description": failed, "schema": error_ref},
                        },
                    }
                },
                f"{prefix}/swagger.json": {
                    "get": {
                        "operationId": "GetSwaggerSpec",
                        "description": "Get the Swagger specification.",
                        "parameters": [
                            {"name": "version", "in": "query", "required": False, "type": "integer", "enum": [2, 3]}
                        ],
                        "responses": {
                            "200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                            "default": {"description": failed, "schema": error_ref},
                        },
                    }
                },
            },
            "definitions": {
                "ServiceInput": input_schema,
                "ServiceOutput": output_schema,
                "ErrorResponse": _error_response_schema(),
            },
        }
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        "openapi": "3.1.0" if version == "3.1" else "3.0.3",
        "info": info,
        "security": [{"Bearer": []}],
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Simple health check endpoint to ensure the service is up at any given point.",
                    "responses": {
                        "200": {
                            "description": health_description,
                            "content": {"text/plain": {"schema": {"type": "string", "example": "Healthy"}}},
                        },
                        "default": {"description": failed, "content": error_content},
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run web service's model and get the prediction output",
                    "security": [{"Bearer": []}],
                    "requestBody": {
                        "description": payload_description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}},
                    },
                    "responses": {
                        "200": {
                            "description": score_ok,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}
                            },
                        },
                        "default": {"description": failed, "content": error_content},
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "enum": [2, 3]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": {"description": failed, "content": error_content},
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "ServiceInput": input_schema,
                "ServiceOutput": output_schema,
                "ErrorResponse": _error_response_schema(),
            },
            "securitySchemes": {"Bearer": bearer},
        },
    }


def _read_user_swagger(script: UserScript, filenames: Sequence[str]) -> Optional[Any]:
    roots = [script.app_root]
    if script.source_dir and os.path.abspath(script.source_dir) != os.path.abspath(script.app_root):
        roots.append(script.source_dir)
    for filename in filenames:
        for root in roots:
            path = os.path.join(root, filename)
            try:
                with open(path, "r", encoding="utf-8") as handle:
                    document = json.load(handle)
            except FileNotFoundError:
                continue
            diag(f"loaded the user's swagger file {path}")
            return document
    return None


def build_swaggers(script: UserScript) -> Tuple[Dict[str, Any], List[str]]:
    """Swagger documents by version alias, and the builder versions that produced one."""
    schema_util = script._schema_util()
    decorated = script.mode == MODE_SCHEMA and schema_util is not None
    if decorated:
        assert schema_util is not None
        supported_by_script = list(schema_util.get_supported_versions(script.run_fn))
        input_schema = schema_util.get_input_schema(script.run_fn)
        output_schema = schema_util.get_output_schema(script.run_fn)
    else:
        supported_by_script = list(_ALL_SCHEMA_VERSIONS)
        input_schema = output_schema = _EMPTY_SCHEMA
    documents: Dict[str, Any] = {}
    versions: List[str] = []
    for version, aliases, filenames in _SWAGGER_BUILDERS:
        document = _read_user_swagger(script, filenames)
        if document is None and any(alias in supported_by_script for alias in aliases):
            document = _swagger_document(version, input_schema, output_schema)
        if document is None:
            continue
        versions.append(version)
        for alias in aliases:
            documents[alias] = document
    return documents, versions


# --------------------------------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------------------------------


def log_model_dir_tree() -> None:
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir or not os.path.exists(model_dir):
        return
    lines: List[str] = []

    def walk(path: str, depth: int) -> None:
        if len(lines) > MODEL_TREE_LINE_LIMIT:
            return
        name = os.path.basename(os.path.normpath(path))
        if os.path.isdir(path):
            lines.append(f"{'    ' * depth}{name}{os.sep}")
            for child in sorted(os.listdir(path)):
                walk(os.path.join(path, child), depth + 1)
        else:
            lines.append(f"{'    ' * depth}{name}")

    walk(model_dir, 0)
    diag("model directory contents:")
    for line in lines[:MODEL_TREE_LINE_LIMIT]:
        diag(line)
    if len(lines) > MODEL_TREE_LINE_LIMIT:
        diag(f"output truncated; first {MODEL_TREE_LINE_LIMIT} lines shown.")


def serve(conn: Connection, script: UserScript) -> int:
    read_frame = conn.read_frame
    send = conn.send
    score = script.score
    max_frame = conn.max_frame
    monotonic_ns = time.monotonic_ns
    while True:
        received = read_frame()
        if received is None:
            return EXIT_OK
        frame_type, payload = received
        if frame_type == T_SCORE or frame_type == T_SCORE_BY:
            if frame_type == T_SCORE:
                request = ScoreFrame(payload)
            else:
                # Queued behind another request: run it only if reached before its deadline
                # (the gateway shares this clock and answers 503 past it).
                try:
                    start_by, seq = _START_BY.unpack_from(payload, 0)
                except struct.error:
                    raise ProtocolError("malformed SCORE_BY frame") from None
                if monotonic_ns() >= start_by:
                    send(_EXPIRED.pack(9, T_SCORE_EXPIRED, seq))
                    continue
                request = ScoreFrame(payload, 8)
            try:
                out = score(request)
            except Exception:
                diag(f"request {request.request_id}: internal error\n{traceback.format_exc()}")
                out = error_frame(request.seq, 500, MSG_INTERNAL)
            if len(out) - 4 > max_frame:
                diag(f"request {request.request_id}: the response ({len(out)} bytes) exceeds the frame limit")
                out = error_frame(request.seq, 500, MSG_INTERNAL)
            send(out)
        elif frame_type == T_PING:
            if len(payload) != 8:
                raise ProtocolError("malformed PING frame")
            send(_PONG.pack(9, T_PONG, _U64.unpack(payload)[0]))
        elif frame_type == T_SWAGGER:
            try:
                (version_len,) = _U16.unpack_from(payload, 0)
                version = payload[2 : 2 + version_len].decode("utf-8")
            except (struct.error, UnicodeDecodeError):
                raise ProtocolError("malformed SWAGGER frame") from None
            if 2 + version_len != len(payload):
                raise ProtocolError("malformed SWAGGER frame")
            try:
                status, body = script.swagger(version)
            except Exception:
                diag(f"swagger generation failed\n{traceback.format_exc()}")
                status, body = 500, json.dumps({"message": MSG_INTERNAL}).encode("utf-8")
            send(b"".join((_SWAGGER_HEAD.pack(3 + len(body), T_SWAGGER_RESULT, status), body)))
        elif frame_type == T_SHUTDOWN:
            return EXIT_OK
        else:
            raise ProtocolError(f"unknown frame type 0x{frame_type:02x}")


class ResourceLimitError(Exception):
    """The resource limits the server asked for could not be applied."""


def apply_resource_limits(environ: Mapping[str, str]) -> List[str]:
    """Apply the server's resource settings to this process before any user code runs.

    ``BERTH_CGROUP_PROCS``: ``:``-separated ``cgroup.procs`` files to write our pid into;
    ``BERTH_CPU_AFFINITY``: comma-separated CPU ids for ``sched_setaffinity``;
    ``BERTH_RLIMIT_AS_BYTES``: an address-space cap (a far backstop behind the server's watchdog).
    Returns what was applied; raises ``ResourceLimitError`` naming what failed.
    """
    applied: List[str] = []
    pid = os.getpid()
    for path in filter(None, environ.get("BERTH_CGROUP_PROCS", "").split(":")):
        try:
            with open(path, "w") as f:
                f.write(str(pid))
        except OSError as ex:
            raise ResourceLimitError(f"cannot join the replica's cgroup ({path}): {ex}") from None
        applied.append(f"cgroup {os.path.dirname(path)}")
    cpus = environ.get("BERTH_CPU_AFFINITY", "")
    if cpus:
        try:
            ids = {int(c) for c in cpus.split(",")}
            os.sched_setaffinity(0, ids)
        except (ValueError, OSError, AttributeError) as ex:
            raise ResourceLimitError(f"cannot set the CPU affinity to {cpus!r}: {ex}") from None
        applied.append(f"cpu affinity {cpus}")
    limit = environ.get("BERTH_RLIMIT_AS_BYTES", "")
    if limit:
        try:
            import resource

            value = int(limit)
            resource.setrlimit(resource.RLIMIT_AS, (value, value))
        except (ValueError, OSError, ImportError) as ex:
            raise ResourceLimitError(f"cannot set RLIMIT_AS to {limit!r}: {ex}") from None
        applied.append(f"address space {limit} bytes")
    return applied


def parse_args(argv: Sequence[str]) -> Tuple[str, int]:
    socket_path = ""
    max_frame = DEFAULT_MAX_FRAME
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--socket" and args:
            socket_path = args.pop(0)
        elif arg == "--max-frame" and args:
            max_frame = int(args.pop(0))
        else:
            raise ValueError(f"unexpected argument {arg!r}")
    if not socket_path:
        raise ValueError("--socket PATH is required")
    return socket_path, max_frame


def prepare_sys_path(app_root: str, source_dir: Optional[str]) -> None:
    shim_dir = os.path.dirname(_SHIM_FILE)
    if sys.path and os.path.abspath(sys.path[0] or ".") == shim_dir:
        del sys.path[0]  # the shim's runtime directory is no place to import user code from
    sys.path.append(app_root)
    if source_dir:
        sys.path.append(os.path.join(app_root, source_dir))


def log_server_settings(script: "UserScript", python_version: str) -> None:
    """The reference server's start-up banner: version, settings and routes."""
    entry = script.entry_script
    entry_path = os.path.join(script.app_root, entry) if entry else "main"
    lines = [
        f"Azure ML Inferencing HTTP server compatible worker: berth-worker {SHIM_VERSION} (Python {python_version})",
        "",
        "Server Settings",
        "---------------",
        f"Entry Script Name: {entry_path}",
        f"Model Directory: {os.environ.get('AZUREML_MODEL_DIR', '')}",
        f"Service Name: {os.environ.get('SERVICE_NAME', 'ML service')}",
        f"Service Version: {os.environ.get('SERVICE_VERSION', '1.0')}",
        f"Worker PID: {os.getpid()}",
        "",
        "Server Routes",
        "---------------",
        f"Score:          POST  /{os.environ.get('SERVICE_PATH_PREFIX', '').strip('/')}/score".replace("//", "/"),
        "",
    ]
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str]) -> int:
    try:
        socket_path, max_frame = parse_args(argv)
    except ValueError as ex:
        diag(f"usage: berth_worker.py --socket PATH [--max-frame BYTES]: {ex}")
        return EXIT_USAGE
    try:
        apply_resource_limits(os.environ)
    except ResourceLimitError as ex:
        diag(f"resource limits: {ex}")
        return EXIT_LIMITS
    sock = _Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as ex:
        diag(f"cannot connect to {socket_path}: {ex}")
        return EXIT_USAGE
    conn = Connection(sock, max_frame)
    version = "%d.%d.%d" % sys.version_info[:3]
    # The supervisor's per-worker nonce proves this connection is the process it started;
    # it is removed from the environment before any user code runs.
    nonce = os.environ.pop("BERTH_WORKER_NONCE", "")
    conn.send(
        frame(
            T_HELLO,
            _HELLO_HEAD.pack(PROTOCOL_VERSION, os.getpid()),
            str16(version),
            str16(SHIM_VERSION),
            str16(nonce),
        )
    )

    app_root = os.environ.get("AML_APP_ROOT") or os.getcwd()
    source_dir = os.environ.get("AZUREML_SOURCE_DIRECTORY") or None
    prepare_sys_path(app_root, source_dir)
    install_compat_modules()
    script = UserScript(app_root, os.environ.get("AZUREML_ENTRY_SCRIPT") or None, source_dir)
    log_server_settings(script, version)
    started = time.perf_counter()
    try:
        script.load()
        server_log(f"Found user script at {script.location()}")
        note = _MODE_NOTES.get(script.mode, "")
        if script.mode == MODE_SCHEMA:
            note = note.format(", ".join(p.name for p in script.schema_params))
        server_log(note)
        server_log("Invoking user's init function")
        init_started = time.perf_counter()
        script.invoke_init()
        server_log(
            "Users's init has completed successfully in %.3f ms" % ((time.perf_counter() - init_started) * 1000)
        )
    except InitFailure as failure:
        diag(failure.message)
        if failure.stage == STAGE_INIT:
            log_model_dir_tree()
        conn.send(frame(T_INIT_FAILED, bytes((failure.stage,)), failure.message.encode("utf-8", "replace")))
        conn.close()
        return EXIT_INIT_FAILED
    init_ms = min(int((time.perf_counter() - started) * 1000), _U32_MAX)

    try:
        script.timeout_ms = max(int(os.environ.get("SCORING_TIMEOUT_MS", "3600000")), 0)
    except ValueError:
        diag("SCORING_TIMEOUT_MS is not an integer; scoring timeout disabled")
        script.timeout_ms = 0
    if script.timeout_ms:
        try:
            signal.signal(signal.SIGALRM, script.on_alarm)
        except ValueError:  # not the main thread of the main interpreter: no SIGALRM here
            script.timeout_ms = 0
    server_log(
        f"Scoring timeout is set to {script.timeout_ms} ms"
        if script.timeout_ms
        else "Scoring timeout is enforced by the Berth gateway (scoringTimeoutMs)"
    )

    conn.send(_INIT_OK.pack(6, T_INIT_OK, init_ms, script.mode))
    try:
        return serve(conn, script)
    except ProtocolError as ex:
        diag(f"protocol error: {ex}")
        return EXIT_PROTOCOL
    except (BrokenPipeError, ConnectionResetError):
        return EXIT_OK
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
