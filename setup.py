"""Build of the one native module (everything else is in pyproject.toml).

dbkeep.gateway._relay relays logged-in gateway sessions in threads that never take the GIL;
it links the system OpenSSL, the same library Python's ssl module uses (checked at import).
"""

from setuptools import Extension, setup

# the relay's C sources, one concern a file (relay.h says which); the headers are `depends`:
# a change to one rebuilds the module (and current setuptools puts them in an sdist)
RELAY = "src/dbkeep/gateway/relay"

setup(
    ext_modules=[
        Extension(
            "dbkeep.gateway._relay",
            [f"{RELAY}/{name}.c" for name in ("module", "sessions", "loop", "tls", "mysql_framing")],
            depends=[f"{RELAY}/{name}.h" for name in ("relay", "tls", "mysql_framing")],
            libraries=["ssl", "crypto"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        )
    ]
)
