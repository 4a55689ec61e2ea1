"""python-upper: ASCII upper-cases each object chunk by chunk (streaming; one
chunk held at a time, though componentize-py 0.25.1 keeps a copy of each it
outputs: README, "Python"). Bytes outside a-z, including every byte >= 0x80, pass
unchanged.

Build: examples/python-upper/build.sh   (prints the .wasm path last)
Run:   ais-wasm run --component "$(examples/python-upper/build.sh | tail -n1)" FILE
"""

from typing import Iterator

from aistore_etl import ETLServer, Reader


class UpperServer(ETLServer):
    def transform_stream(self, reader: Reader, path: str, etl_args: str) -> Iterator[bytes]:
        for chunk in reader:  # chunks of up to 256 KiB
            yield chunk.upper()  # bytes.upper() touches only a-z


Lifecycle, Buffered, Streaming = UpperServer.exports()
