"""python-md5: replaces each object with its MD5 digest as 32 lowercase hex
characters (buffered), like AIStore's md5 ETL.

Build: examples/python-md5/build.sh   (prints the .wasm path last)
Run:   ais-wasm run --component "$(examples/python-md5/build.sh | tail -n1)" FILE
"""

import hashlib

from aistore_etl import ETLServer


class MD5Server(ETLServer):
    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return hashlib.md5(data).hexdigest().encode("ascii")


Lifecycle, Buffered, Streaming = MD5Server.exports()
