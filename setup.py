"""Build of the one native module (everything else is in pyproject.toml).

dbkeep.gateway._relay relays logged-in gateway sessions in threads that never take the GIL;
it links the system OpenSSL, the same library Python's ssl module uses (checked at import).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dbkeep.gateway._relay",
            ["src/dbkeep/gateway/_relay.c"],
            libraries=["ssl", "crypto"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        )
    ]
)
