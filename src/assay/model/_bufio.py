"""A seekable binary file over ``bytes`` or an ``mmap``, so that zipfile, tarfile and h5py read a mapped file
without copying it.

    >>> zipfile.ZipFile(BufReader(mm))
"""

from __future__ import annotations

import io
import mmap
from typing import Any, BinaryIO, TypeAlias

Buffer: TypeAlias = bytes | bytearray | mmap.mmap


class BufReader(io.RawIOBase):
    """A seekable binary file over ``bytes`` or an ``mmap``, without copying the whole buffer."""

    def __init__(self, buf: Buffer, start: int = 0, end: int | None = None) -> None:
        super().__init__()
        self._buf = buf
        self._start = start
        self._end = len(buf) if end is None else end
        self._pos = start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self._start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = self._start + offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        else:
            pos = self._end + offset
        self._pos = max(self._start, pos)
        return self._pos - self._start

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self._end - self._pos
        n = max(0, min(n, self._end - self._pos))
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return bytes(data)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._end if size is None or size < 0 else min(self._end, self._pos + size)
        nl = self._buf.find(b"\n", self._pos, limit)
        stop = limit if nl < 0 else nl + 1
        data = self._buf[self._pos:stop]
        self._pos = stop
        return bytes(data)


def stream_of(buf: Buffer, start: int = 0) -> BinaryIO:
    """A C-speed seekable stream over ``buf`` positioned at ``start`` (offsets stay those of ``buf``)."""
    stream: BinaryIO = io.BytesIO(buf) if isinstance(buf, bytes) else buf  # type: ignore[assignment]
    stream.seek(start)
    return stream
