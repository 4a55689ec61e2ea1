"""A small base class for writing ais-wasm transforms in Python (componentize-py).

Shaped like the AIStore Python SDK's ``ETLServer``: subclass :class:`ETLServer`,
override ``transform`` and/or ``transform_stream``, and export the classes
componentize-py looks for at the bottom of your module::

    import hashlib
    from aistore_etl import ETLServer

    class MD5Server(ETLServer):
        def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
            return hashlib.md5(data).hexdigest().encode()

    Lifecycle, Buffered, Streaming = MD5Server.exports()

Build it against one world of wit/etl.wit with ``examples/build-python.sh``:
``buffered-transform`` (uses ``transform``), ``streaming-transform`` (uses
``transform_stream``) or ``full`` (both; the host picks per object). Whatever you
override, the other shape works too: the default ``transform_stream`` reads the
whole object and calls ``transform``; the default ``transform`` feeds ``data`` to
``transform_stream`` and joins what it yields.

Errors: raise :class:`BadInput` when the object itself is wrong (the AIStore
target gets a 4xx and does not retry). Any other exception becomes a ``failed``
error (5xx) with ``"<ExceptionType>: <message>"``, and its traceback goes to
stderr, which ais-wasm logs. Nothing escapes to the component boundary: an
uncaught Python exception would trap (kill) the instance.

The instance: one server object per WebAssembly instance, created in the init
hook (``__init__()`` then ``init(config)``) and reused for every object the host
sends to that instance. Module-level code (imports, constant tables) runs once
at build time and is snapshotted into the component, so it costs nothing at start.
"""

import io
import sys
import traceback
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Type

from componentize_py_types import Err
from wit_world import exports as _wit_exports
from wit_world.imports.types import TransformError_BadInput, TransformError_Failed

__all__ = ["ETLServer", "BadInput", "Reader", "CHUNK_SIZE"]

#: Bytes asked of the host per read by default (the host caps one read at 1 MiB).
CHUNK_SIZE = 256 * 1024
_HOST_READ_MAX = 1 << 20


class BadInput(Exception):
    """Raise when the object cannot be transformed and a retry will not help
    (corrupt data, unsupported ``etl_args``). Maps to the ``bad-input`` error."""


class Reader(io.RawIOBase):
    """The object being transformed, as a read-only binary file.

    ``read(n)`` returns up to ``n`` bytes (possibly fewer) and ``b""`` only at
    the end; ``read()`` returns the rest of the object. Iterating yields chunks
    of up to :data:`CHUNK_SIZE` bytes. ``size_hint()`` is the object's size when
    the host knows it, else ``None``. Valid only during the call it was given to.
    """

    def __init__(self, source, size: Optional[int] = None) -> None:
        super().__init__()
        self._source = source  # host reader, or an io.BytesIO in buffered mode
        self._size = size

    def readable(self) -> bool:
        return True

    def size_hint(self) -> Optional[int]:
        return self._size

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._read_some(_HOST_READ_MAX):
                parts.append(chunk)
            return b"".join(parts)
        return self._read_some(size) if size else b""

    def readinto(self, buffer) -> int:
        chunk = self._read_some(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def __iter__(self) -> Iterator[bytes]:  # chunks, not lines
        while chunk := self._read_some(CHUNK_SIZE):
            yield chunk

    def _read_some(self, size: int) -> bytes:
        return self._source.read(min(size, _HOST_READ_MAX))


class ETLServer:
    """Base class of a transform: override ``transform``, ``transform_stream``
    or both, and optionally ``init``.

    Unlike the AIStore SDK's servers there is no ``start()``, no HTTP and no
    direct put: the ais-wasm host does all I/O and calls these methods.
    """

    def init(self, config: Dict[str, str]) -> None:
        """Called once per instance before the first object with the operator's
        configuration (``ais-wasm run --config k=v``). Raise to fail start-up."""

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        """Transform a whole object: ``data`` in, the result out.

        ``path`` names the object (``<bucket>/<object>`` for AIStore requests,
        the file path for ``ais-wasm run``); ``etl_args`` is the per-request
        argument string, empty when none was given."""
        if type(self).transform_stream is ETLServer.transform_stream:
            raise NotImplementedError(
                f"{type(self).__name__} overrides neither transform nor transform_stream"
            )
        return b"".join(
            _check_bytes(chunk)
            for chunk in self.transform_stream(
                Reader(io.BytesIO(data), len(data)), path, etl_args
            )
        )

    def transform_stream(self, reader: Reader, path: str, etl_args: str) -> Iterable[bytes]:
        """Transform an object in pieces: read ``reader`` (a binary file) and
        yield the output chunk by chunk, holding one chunk at a time whatever
        the object size (componentize-py 0.25.1 still keeps a copy of every
        chunk yielded: README, "Python"). The default reads everything and
        calls ``transform``."""
        if type(self).transform is ETLServer.transform:
            raise NotImplementedError(
                f"{type(self).__name__} overrides neither transform nor transform_stream"
            )
        yield self.transform(reader.read(), path, etl_args)

    @classmethod
    def exports(cls) -> Tuple[type, type, type]:
        """The ``Lifecycle``, ``Buffered`` and ``Streaming`` classes componentize-py
        expects at the top level of the app module, all bound to one ``cls``
        instance per WebAssembly instance. Unpack all three whatever the world:
        componentize-py uses only those the world exports."""
        return _make_exports(cls)


def _check_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a transform must produce bytes, not {type(value).__name__}")


def _to_error(exc: BaseException) -> Err:
    """The WIT transform-error for an exception raised by user code."""
    if isinstance(exc, Err):  # raised through the raw bindings: pass it on
        return exc
    if isinstance(exc, BadInput):
        return Err(TransformError_BadInput(str(exc) or "bad input"))
    traceback.print_exception(exc, file=sys.stderr)
    message = str(exc)
    return Err(TransformError_Failed(f"{type(exc).__name__}: {message}" if message else type(exc).__name__))


def _make_exports(cls: Type[ETLServer]):
    state: List[Optional[ETLServer]] = [None]

    def server() -> ETLServer:
        if state[0] is None:  # the host always calls init first; be safe anyway
            state[0] = cls()
        return state[0]

    class Lifecycle(_wit_exports.Lifecycle):
        def init(self, config: List[Tuple[str, str]]) -> None:
            try:
                instance = cls()
                instance.init(dict(config))
                state[0] = instance
            except BaseException as exc:  # noqa: BLE001 - anything else traps
                raise _to_error(exc) from None

    class Buffered:
        def transform(self, data: bytes, path: str, args: str) -> bytes:
            try:
                return _check_bytes(server().transform(data, path, args))
            except BaseException as exc:  # noqa: BLE001
                raise _to_error(exc) from None

    class Streaming:
        def transform_stream(self, input, output, path: str, args: str) -> None:
            try:
                reader = Reader(input, input.size_hint())
                for chunk in server().transform_stream(reader, path, args):
                    chunk = _check_bytes(chunk)
                    if chunk:
                        output.write(chunk)
            except BaseException as exc:  # noqa: BLE001
                raise _to_error(exc) from None

    # Subclass the generated protocols where this world has them (documentation
    # and type checking only; componentize-py looks the classes up by name).
    if hasattr(_wit_exports, "Buffered"):
        Buffered = type("Buffered", (Buffered, _wit_exports.Buffered), {})
    if hasattr(_wit_exports, "Streaming"):
        Streaming = type("Streaming", (Streaming, _wit_exports.Streaming), {})
    return Lifecycle, Buffered, Streaming
