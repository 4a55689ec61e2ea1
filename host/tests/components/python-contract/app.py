"""python-contract (../README.md): error and init paths through
examples/python/aistore_etl.py.

Only ``transform`` is written: the helper derives the streaming export from it, so
both shapes of world ``full`` go through the helper's own code.
"""

from typing import Dict

from aistore_etl import BadInput, ETLServer


class Contract(ETLServer):
    config: Dict[str, str] = {}

    def init(self, config: Dict[str, str]) -> None:
        if "refuse" in config:
            raise BadInput(f"refused: {config['refuse']}")
        self.config = config

    def transform(self, data: bytes, path: str, etl_args: str) -> bytes:
        if etl_args == "":
            return data
        if etl_args == "bad":
            raise BadInput(f"bad object {path}")
        if etl_args == "fail":
            raise ValueError(f"failed on {path}")
        if etl_args == "config":
            lines = (f"{key}={value}\n" for key, value in sorted(self.config.items()))
            return "".join(lines).encode()
        if etl_args == "args":
            return f"{path}|{etl_args}".encode()
        raise BadInput(f"unknown etl_args {etl_args}")


Lifecycle, Buffered, Streaming = Contract.exports()
