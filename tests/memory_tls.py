"""TLS between two ``ssl.SSLObject``s over memory BIOs, records moved by hand (no sockets)."""

from __future__ import annotations

import ssl


def shuttle_handshake(server: ssl.SSLObject, client: ssl.SSLObject, s_in: ssl.MemoryBIO, s_out: ssl.MemoryBIO,
                      c_in: ssl.MemoryBIO, c_out: ssl.MemoryBIO, *, rounds: int = 20) -> None:
    """Run the handshake until both sides have finished and no record is in flight (TLS 1.3
    tickets then wait in the client's read BIO)."""
    finished = {"client": False, "server": False}
    for _ in range(rounds):
        for name, side in (("client", client), ("server", server)):
            if not finished[name]:
                try:
                    side.do_handshake()
                    finished[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(finished.values()) and not c_out.pending and not s_out.pending:
            return
    raise AssertionError(f"the TLS handshake did not finish in {rounds} rounds: {finished}")
