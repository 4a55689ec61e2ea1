"""The AIStore Python ETL runtime's FastAPIServer with a benchmark transform.

Run by bench/python-runtime.sh as `uvicorn bench_etl:fastapi_app`; the transform is
chosen by BENCH_TRANSFORM (echo, md5 or upper), the same transforms as the
examples/echo, examples/md5 and examples/upper components.
"""

import hashlib
import os

from aistore.sdk.etl.webserver.fastapi_server import FastAPIServer


class EchoServer(FastAPIServer):
    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return data


class MD5Server(FastAPIServer):
    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return hashlib.md5(data).hexdigest().encode()


class UpperServer(FastAPIServer):
    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        return data.upper()


SERVERS = {"echo": EchoServer, "md5": MD5Server, "upper": UpperServer}

# FastAPIServer reads AIS_TARGET_URL in its constructor; host and port are
# uvicorn's business here.
fastapi_server = SERVERS[os.environ.get("BENCH_TRANSFORM", "echo")]()
fastapi_app = fastapi_server.app
