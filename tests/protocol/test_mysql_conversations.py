"""Captured MySQL conversations replayed through the gateway's state machines.

``CONVERSATIONS`` were recorded between real clients and MariaDB 10.11.19 by a proxy that
terminated and re-originated TLS ("tls" marks the switch; later bytes are the decrypted
stream): PyMySQL 2.2.8 (reports itself as 1.2.4), mysql-connector-python 26.10 (pure Python),
the ``mariadb`` 10.11 CLI (libmariadb 3.3.20). They cover greetings, SSLRequests,
HandshakeResponse41 from each client, mysql_native_password, the ed25519 auth switch,
OK / ERR, COM_QUERY, LOAD DATA LOCAL INFILE
(0xFB request, content packets, MariaDB progress report), COM_CHANGE_USER (accepted and
denied), COM_RESET_CONNECTION, COM_INIT_DB, COM_PING, prepared statements and COM_QUIT.

``CLEAR_PASSWORD_CONVERSATIONS`` were recorded on the gateway side of a ClientFacing that
asks every client to switch to mysql_clear_password (what the IAM login does): pymysql,
mysql-connector-python and the mariadb CLI over TLS, and the CLI in cleartext.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbkeep.errors import RemoteProtocolError
from dbkeep.gateway.mysql import (
    NEED_DATA,
    AuthData,
    AuthSwitchRequest,
    ChangeUser,
    ClientFacing,
    ClientState,
    Command,
    ConnectionClosed,
    EngineState,
    ErrPacket,
    InitialHandshake,
    LoginRequested,
    OkPacket,
    Prepare,
    Query,
    Quit,
    Relay,
    SslRequested,
)
from dbkeep.gateway.mysql.wire import PacketBuffer
from dbkeep.gateway.mysql.relay import HOLD

# fmt: off
# ruff: noqa: E501
CONVERSATIONS: dict[str, list[tuple[str, bytes]]] = {
    "mariadb_cli_cleartext": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100090000004172"
            "3b6f4031706400feff080200ff81150000000000001d000000262e533757333656302c2b31006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "d40000018ca2bf000000100021000000000000000000000000000000000000001d000000616c696365001412"
            "392937e89a74f1e6ee35b25d65995954ee712f617070006d7973716c5f6e61746976655f70617373776f7264"
            "007e035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f706964043632"
            "33340f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70"
            "726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
        )),
        ("s2c", bytes.fromhex("0f000002000000024000000006010403617070")),
        ("c2s", bytes.fromhex("090000000353454c4543542031")),
        ("s2c", bytes.fromhex(
            "0200000101011800000203646566000000013100000c3f000100000003810000000005000003fe0000020002"
            "000004013105000005fe00000200"
        )),
        ("c2s", bytes.fromhex(
            "5a000000034c4f41442044415441204c4f43414c20494e46494c4520272f746d702f6d64626361705f746f6f"
            "6c732f646174612e6373762720494e544f205441424c452074204649454c4453205445524d494e4154454420"
            "425920272c27"
        )),
        ("s2c", bytes.fromhex("1b000001fb2f746d702f6d64626361705f746f6f6c732f646174612e637376")),
        ("c2s", bytes.fromhex("0c000002312c6f6e650a322c74776f0a00000003")),
        ("s2c", bytes.fromhex(
            "19000004ffffff0102020000000f456e642062756c6b20696e7365727437000005000200020000002f526563"
            "6f7264733a2032202044656c657465643a20302020536b69707065643a203020205761726e696e67733a2030"
        )),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "mariadb_cli_tls": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000a000000313b"
            "755d52606e2800feff080200ff81150000000000001d00000078483f416869544a554b5b65006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex("2000000184aabf000000100021000000000000000000000000000000000000001d000000")),
        ("tls", b""),
        ("c2s", bytes.fromhex(
            "d000000284aabf000000100021000000000000000000000000000000000000001d000000616c696365001479"
            "99e8f3f7be7a4ec42216968f3971f796a11ee86d7973716c5f6e61746976655f70617373776f7264007e035f"
            "6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404363236310f5f"
            "636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772"
            "616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
        )),
        ("s2c", bytes.fromhex("0700000300000002000000")),
        ("c2s", bytes.fromhex("090000000353454c4543542032")),
        ("s2c", bytes.fromhex(
            "0200000101011800000203646566000000013200000c3f000100000003810000000005000003fe0000020002"
            "000004013205000005fe00000200"
        )),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "mariadb_cli_ed25519": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000b0000004847"
            "6c6b5340243300feff080200ff81150000000000001d000000736a397d2e68425254313557006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "ce00000184a2bf000000100021000000000000000000000000000000000000001d000000626f620014bece46"
            "755c77da6244f178ad68a45294253ddac46d7973716c5f6e61746976655f70617373776f7264007e035f6f73"
            "054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404363237340f5f636c"
            "69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d"
            "5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
        )),
        ("s2c", bytes.fromhex(
            "30000002fe636c69656e745f65643235353139001ded984283904dcb7209256ff149df8efc6fb63adccf4072"
            "ea6b68e95ded1986"
        )),
        ("c2s", bytes.fromhex(
            "40000003ccfc025d2d7357d15d98826898179d0a36218cac0e56cefb090de0bb814631845e4817b45650e012"
            "d320a05b56ee12f772a42ba77f9546b2815de5abb84d5300"
        )),
        ("s2c", bytes.fromhex("0700000400000002000000")),
        ("c2s", bytes.fromhex("090000000353454c4543542033")),
        ("s2c", bytes.fromhex(
            "0200000101011800000203646566000000013300000c3f000100000003810000000005000003fe0000020002"
            "000004013305000005fe00000200"
        )),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "mariadb_cli_ed25519_denied": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000c0000006565"
            "4a247237562e00feff080200ff81150000000000001d0000007d525d5f44743f7966722c7d006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "ce00000184a2bf000000100021000000000000000000000000000000000000001d000000626f6200144030cc"
            "07062336bbea709fb563372773289832796d7973716c5f6e61746976655f70617373776f7264007e035f6f73"
            "054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404363238360f5f636c"
            "69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d"
            "5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
        )),
        ("s2c", bytes.fromhex(
            "30000002fe636c69656e745f65643235353139003b4c26303cfa5694c0c32630703e855baaa5481b153ebee5"
            "6385d60d1f5edcae"
        )),
        ("c2s", bytes.fromhex(
            "400000034d96b392ee54d2b60d0b0edbfbd8ffb24774cece9f2c31ba333ae3ba5938a5bb0a0e63d58014d393"
            "6ba655ae7599a4b6f92cacf4317414c749e39fa9f3170d0b"
        )),
        ("s2c", bytes.fromhex(
            "47000004ff15042332383030304163636573732064656e69656420666f7220757365722027626f622740276c"
            "6f63616c686f73742720287573696e672070617373776f72643a2059455329"
        )),
    ],
    "pymysql_cleartext": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275310014000000746a"
            "397b253f4e4b00feff080200ff81150000000000001d0000006c60796260393d64613a3d64006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "8b0000018da23a00ffffff002d0000000000000000000000000000000000000000000000616c69636500148f"
            "94c34566170a334eb84819a4d2e6edfc20ee80617070006d7973716c5f6e61746976655f70617373776f7264"
            "00350c5f636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e"
            "34045f7069640437363131"
        )),
        ("s2c", bytes.fromhex("0700000200000002000000")),
        ("c2s", bytes.fromhex("1200000003534554204e414d455320757466386d6234")),
        ("s2c", bytes.fromhex("0700000100000002000000")),
        ("c2s", bytes.fromhex("1300000003534554204155544f434f4d4d4954203d2030")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("090000000353454c4543542031")),
        ("s2c", bytes.fromhex(
            "010000010117000002036465660000000131000c3f000100000003810000000005000003fe00000000020000"
            "04013105000005fe00000000"
        )),
        ("c2s", bytes.fromhex(
            "5a000000034c4f41442044415441204c4f43414c20494e46494c4520272f746d702f6d64626361705f746f6f"
            "6c732f646174612e6373762720494e544f205441424c452074204649454c4453205445524d494e4154454420"
            "425920272c27"
        )),
        ("s2c", bytes.fromhex("1b000001fb2f746d702f6d64626361705f746f6f6c732f646174612e637376")),
        ("c2s", bytes.fromhex("0c000002312c6f6e650a322c74776f0a00000003")),
        ("s2c", bytes.fromhex(
            "37000004000200010000002f5265636f7264733a2032202044656c657465643a20302020536b69707065643a"
            "203020205761726e696e67733a2030"
        )),
        ("c2s", bytes.fromhex("080000000353454c45432031")),
        ("s2c", bytes.fromhex(
            "a4000001ff2804233432303030596f75206861766520616e206572726f7220696e20796f75722053514c2073"
            "796e7461783b20636865636b20746865206d616e75616c207468617420636f72726573706f6e647320746f20"
            "796f7572204d617269614442207365727665722076657273696f6e20666f7220746865207269676874207379"
            "6e74617820746f20757365206e656172202753454c4543203127206174206c696e652031"
        )),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "pymysql_tls": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100130000006358"
            "704b6230632600feff080200ff81150000000000001d0000002e55422a4b7c4e522f324c6a006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex("2000000105aa3a00ffffff002d0000000000000000000000000000000000000000000000")),
        ("tls", b""),
        ("c2s", bytes.fromhex(
            "8700000205aa3a00ffffff002d0000000000000000000000000000000000000000000000616c6963650014ca"
            "e1354d2bf1f8cbf3c036a81bf42ebbb78696116d7973716c5f6e61746976655f70617373776f726400350c5f"
            "636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e34045f70"
            "69640437343632"
        )),
        ("s2c", bytes.fromhex("0700000300000002000000")),
        ("c2s", bytes.fromhex("1200000003534554204e414d455320757466386d6234")),
        ("s2c", bytes.fromhex("0700000100000002000000")),
        ("c2s", bytes.fromhex("1300000003534554204155544f434f4d4d4954203d2030")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("110000000353454c45435420404076657273696f6e")),
        ("s2c", bytes.fromhex(
            "01000001011f0000020364656600000009404076657273696f6e000c2d0068000000fd000027000005000003"
            "fe000000001b0000041a31302e31312e31392d4d6172696144422d302b6465623132753105000005fe000000"
            "00"
        )),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "pymysql_denied": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100150000003039"
            "6c376c39776c00feff080200ff81150000000000001d000000397667257b62576e43446965006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "8700000105a23a00ffffff002d0000000000000000000000000000000000000000000000616c696365001471"
            "43cef8dd88de99f2edd52f9cf4ee339556ed346d7973716c5f6e61746976655f70617373776f726400350c5f"
            "636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e34045f70"
            "69640437363337"
        )),
        ("s2c", bytes.fromhex(
            "49000002ff15042332383030304163636573732064656e69656420666f7220757365722027616c6963652740"
            "276c6f63616c686f73742720287573696e672070617373776f72643a2059455329"
        )),
    ],
    "connector_cleartext": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275310007000000387c"
            "2c602122243100feff080200ff81150000000000001d00000066336730584a496f757e383c006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "e30000018da23b00000000402d0000000000000000000000000000000000000000000000616c69636500147a"
            "50b3c5a38faef806f62ca79a231d9b308747ef617070006d7973716c5f6e61746976655f70617373776f7264"
            "008d045f7069640436313633095f706c6174666f726d067838365f36340c5f736f757263655f686f73740276"
            "6d0c5f636c69656e745f6e616d65166d7973716c2d636f6e6e6563746f722d707974686f6e0f5f636c69656e"
            "745f6c6963656e73650747504c2d322e300f5f636c69656e745f76657273696f6e0732362e31302e30035f6f"
            "730944656269616e2d3132"
        )),
        ("s2c", bytes.fromhex("0700000200000002000000")),
        ("c2s", bytes.fromhex(
            "3100000003534554204e414d45532027757466386d62342720434f4c4c4154452027757466386d62345f6765"
            "6e6572616c5f636927"
        )),
        ("s2c", bytes.fromhex("0700000100000002000000")),
        ("c2s", bytes.fromhex("1f0000000353455420404073657373696f6e2e6175746f636f6d6d6974203d204f4646")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("010000000e")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("100000000353454c454354202768c3a96c6c6f27")),
        ("s2c", bytes.fromhex(
            "01000001011c000002036465660000000668c3a96c6c6f000c2d0014000000fd010027000005000003fe0000"
            "0000070000040668c3a96c6c6f05000005fe00000000"
        )),
        ("c2s", bytes.fromhex(
            "c6000000116361726f6c0014e5aa1dc6fb0a0902b1e3a399476bde39aa8fbd8f617070002d006d7973716c5f"
            "6e61746976655f70617373776f7264008d045f7069640436313633095f706c6174666f726d067838365f3634"
            "0c5f736f757263655f686f737402766d0c5f636c69656e745f6e616d65166d7973716c2d636f6e6e6563746f"
            "722d707974686f6e0f5f636c69656e745f6c6963656e73650747504c2d322e300f5f636c69656e745f766572"
            "73696f6e0732362e31302e30035f6f730944656269616e2d3132"
        )),
        ("s2c", bytes.fromhex(
            "2c000001fe6d7973716c5f6e61746976655f70617373776f726400387c2c602122243166336730584a496f75"
            "7e383c00"
        )),
        ("c2s", bytes.fromhex("14000002e5aa1dc6fb0a0902b1e3a399476bde39aa8fbd8f")),
        ("s2c", bytes.fromhex("0700000300000002000000")),
        ("c2s", bytes.fromhex(
            "3100000003534554204e414d45532027757466386d62342720434f4c4c4154452027757466386d62345f6765"
            "6e6572616c5f636927"
        )),
        ("s2c", bytes.fromhex("0700000100000002000000")),
        ("c2s", bytes.fromhex("1f0000000353455420404073657373696f6e2e6175746f636f6d6d6974203d204f4646")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("010000000e")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("160000000353454c4543542043555252454e545f555345522829")),
        ("s2c", bytes.fromhex(
            "010000010124000002036465660000000e43555252454e545f555345522829000c2d0000060000fd00002700"
            "0005000003fe0000000008000004076361726f6c402505000005fe00000000"
        )),
        ("c2s", bytes.fromhex(
            "c3000000116361726f6c001424d2c6096b832888780f4de62ffe9768b69d9df3002d006d7973716c5f6e6174"
            "6976655f70617373776f7264008d045f7069640436313633095f706c6174666f726d067838365f36340c5f73"
            "6f757263655f686f737402766d0c5f636c69656e745f6e616d65166d7973716c2d636f6e6e6563746f722d70"
            "7974686f6e0f5f636c69656e745f6c6963656e73650747504c2d322e300f5f636c69656e745f76657273696f"
            "6e0732362e31302e30035f6f730944656269616e2d3132"
        )),
        ("s2c", bytes.fromhex(
            "2c000001fe6d7973716c5f6e61746976655f70617373776f726400387c2c602122243166336730584a496f75"
            "7e383c00"
        )),
        ("c2s", bytes.fromhex("1400000224d2c6096b832888780f4de62ffe9768b69d9df3")),
        ("s2c", bytes.fromhex(
            "49000003ff15042332383030304163636573732064656e69656420666f72207573657220276361726f6c2740"
            "276c6f63616c686f73742720287573696e672070617373776f72643a2059455329"
        )),
        ("c2s", bytes.fromhex("010000001f")),
        ("s2c", bytes.fromhex("0700000100000002000000")),
        ("c2s", bytes.fromhex(
            "3100000003534554204e414d45532027757466386d62342720434f4c4c4154452027757466386d62345f6765"
            "6e6572616c5f636927"
        )),
        ("s2c", bytes.fromhex("0700000100000002000000")),
        ("c2s", bytes.fromhex("1f0000000353455420404073657373696f6e2e6175746f636f6d6d6974203d204f4646")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("0400000002617070")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("010000000e")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("0c000000034b494c4c20393939393939")),
        ("s2c", bytes.fromhex("22000001ff4604234859303030556e6b6e6f776e207468726561642069643a20393939393939")),
        ("c2s", bytes.fromhex("010000000e")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("0d0000001653454c454354203f202b2031")),
        ("s2c", bytes.fromhex(
            "0c0000010001000000010001000000001700000203646566000000013f000c3f000000000006800000000005"
            "000003fe000000001b00000403646566000000053f202b2031000c3f001100000005800000000005000005fe"
            "00000000"
        )),
        ("c2s", bytes.fromhex("050000001a01000000")),
        ("s2c", bytes.fromhex("0700000100000000000000")),
        ("c2s", bytes.fromhex("0f000000170100000000010000000001018029")),
        ("s2c", bytes.fromhex(
            "01000001011b00000203646566000000053f202b2031000c3f000500000003a00000000005000003fe000000"
            "000600000400002a00000005000005fe00000000"
        )),
        ("c2s", bytes.fromhex("0100000001")),
    ],
}

CLEAR_PASSWORD_CONVERSATIONS: dict[str, list[tuple[str, bytes]]] = {
    "pymysql_tls": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100090000004172"
            "3b6f4031706400deff080200ff81150000000000001d000000262e533757333656302c2b31006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex("2000000105aa3a00ffffff002d0000000000000000000000000000000000000000000000")),
        ("tls", b""),
        ("c2s", bytes.fromhex(
            "8a00000205aa3a00ffffff002d000000000000000000000000000000000000000000000069616d7573657200"
            "14da4ac1716be0ed1336289fbdeaa194a6210daeb36d7973716c5f6e61746976655f70617373776f72640036"
            "0c5f636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e3404"
            "5f706964053135373630"
        )),
        ("s2c", bytes.fromhex("16000003fe6d7973716c5f636c6561725f70617373776f726400")),
        ("c2s", bytes.fromhex("0d0000047333637265742d746f6b656e00")),
        ("s2c", bytes.fromhex("0700000500000002000000")),
        ("c2s", bytes.fromhex("1200000003534554204e414d455320757466386d6234")),
        ("s2c", bytes.fromhex("14000001ff510423485930303066616b6520736572766572")),
    ],
    "connector_tls": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100090000004172"
            "3b6f4031706400deff080200ff81150000000000001d000000262e533757333656302c2b31006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex("200000010daa3b00000000402d0000000000000000000000000000000000000000000000")),
        ("tls", b""),
        ("c2s", bytes.fromhex(
            "db0000020daa3b00000000402d000000000000000000000000000000000000000000000069616d7573657200"
            "0d7333637265742d746f6b656e00006d7973716c5f636c6561725f70617373776f7264008e045f7069640531"
            "35373630095f706c6174666f726d067838365f36340c5f736f757263655f686f737402766d0c5f636c69656e"
            "745f6e616d65166d7973716c2d636f6e6e6563746f722d707974686f6e0f5f636c69656e745f6c6963656e73"
            "650747504c2d322e300f5f636c69656e745f76657273696f6e0732362e31302e30035f6f730944656269616e"
            "2d3132"
        )),
        ("s2c", bytes.fromhex("16000003fe6d7973716c5f636c6561725f70617373776f726400")),
        ("c2s", bytes.fromhex("0d0000047333637265742d746f6b656e00")),
        ("s2c", bytes.fromhex("0700000500000002000000")),
        ("c2s", bytes.fromhex(
            "3100000003534554204e414d45532027757466386d62342720434f4c4c4154452027757466386d62345f6765"
            "6e6572616c5f636927"
        )),
        ("s2c", bytes.fromhex("14000001ff510423485930303066616b6520736572766572")),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "mariadb_cli_tls": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100090000004172"
            "3b6f4031706400deff080200ff81150000000000001d000000262e533757333656302c2b31006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex("2000000184aabf000000100021000000000000000000000000000000000000001d000000")),
        ("tls", b""),
        ("c2s", bytes.fromhex(
            "d300000284aabf000000100021000000000000000000000000000000000000001d00000069616d7573657200"
            "14da4ac1716be0ed1336289fbdeaa194a6210daeb36d7973716c5f6e61746976655f70617373776f7264007f"
            "035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640531353738"
            "300f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c7072"
            "6f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
        )),
        ("s2c", bytes.fromhex("16000003fe6d7973716c5f636c6561725f70617373776f726400")),
        ("c2s", bytes.fromhex("0d0000047333637265742d746f6b656e00")),
        ("s2c", bytes.fromhex("0700000500000002000000")),
        ("c2s", bytes.fromhex("090000000353454c4543542031")),
        ("s2c", bytes.fromhex("14000001ff510423485930303066616b6520736572766572")),
        ("c2s", bytes.fromhex("0100000001")),
    ],
    "mariadb_cli_cleartext": [
        ("s2c", bytes.fromhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100090000004172"
            "3b6f4031706400deff080200ff81150000000000001d000000262e533757333656302c2b31006d7973716c5f"
            "6e61746976655f70617373776f726400"
        )),
        ("c2s", bytes.fromhex(
            "d300000184a2bf000000100021000000000000000000000000000000000000001d00000069616d7573657200"
            "14da4ac1716be0ed1336289fbdeaa194a6210daeb36d7973716c5f6e61746976655f70617373776f7264007f"
            "035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640531353738"
            "350f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c7072"
            "6f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
        )),
        ("s2c", bytes.fromhex("16000002fe6d7973716c5f636c6561725f70617373776f726400")),
        ("c2s", bytes.fromhex("0d0000037333637265742d746f6b656e00")),
        ("s2c", bytes.fromhex("0700000400000002000000")),
        ("c2s", bytes.fromhex("090000000353454c4543542031")),
        ("s2c", bytes.fromhex("14000001ff510423485930303066616b6520736572766572")),
        ("c2s", bytes.fromhex("0100000001")),
    ],
}
# fmt: on


# --- replay through the relay -----------------------------------------------------------------


def _describe(event: object) -> str:
    name = type(event).__name__
    if isinstance(event, (Query, Prepare)):
        return f"{name}:{event.sql}"
    if isinstance(event, (LoginRequested, ChangeUser)):
        return f"{name}:{event.user}"
    if isinstance(event, Command):
        return f"{name}:0x{event.command:02x}"
    return name


class Replay:
    """Feeds a recorded conversation to a Relay, collecting what it writes to each side."""

    def __init__(self, conversation: list[tuple[str, bytes]], *, split: list[int] | None = None,
                 refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        tls = any(d == "tls" for d, _ in conversation)
        self.decisions: list[str] = []
        self.refuse = refuse
        self.relay = Relay(self.decide, client_tls=True, engine_tls=tls)
        self.to_client = bytearray()
        self.to_engine = bytearray()
        self.recorded_client = bytearray()
        self.recorded_engine = bytearray()
        self.events: list[str] = []
        self.closed = False
        self.conversation = conversation
        self.split = split or []

    def decide(self, event: object) -> ErrPacket | None:
        self.decisions.append(_describe(event))
        if isinstance(event, Query) and any(word in event.sql for word in self.refuse):
            return ErrPacket(1227, "Access denied; you need (at least one of) the SYSTEM_USER "
                                   "privilege(s) for this operation", "42000")
        return None

    def _take(self, out: object) -> None:
        for data in out.to_client:  # type: ignore[attr-defined]
            self.to_client += data
        for data in out.to_engine:  # type: ignore[attr-defined]
            self.to_engine += data
        for event in out.events:  # type: ignore[attr-defined]
            if type(event).__name__ != "Passthrough":
                self.events.append(_describe(event))
        self.closed |= out.close  # type: ignore[attr-defined]
        if out.start_client_tls:  # type: ignore[attr-defined]
            self._take(self.relay.client_tls_established())
        if out.start_engine_tls:  # type: ignore[attr-defined]
            self._take(self.relay.engine_tls_established())

    def run(self) -> Replay:
        cuts = iter(self.split)
        for direction, data in self.conversation:
            if direction == "tls":
                continue
            pieces = [data]
            if self.split:
                pieces, rest = [], data
                while rest:
                    n = max(1, next(cuts, len(rest)))
                    pieces.append(rest[:n])
                    rest = rest[n:]
            if direction == "s2c":
                self.recorded_client += data
                for piece in pieces:
                    self._take(self.relay.engine_data(piece))
            else:
                self.recorded_engine += data
                for piece in pieces:
                    self._take(self.relay.client_data(piece))
            if not data:  # end of stream: nothing may follow it
                break
        return self


def _expected_streams(replay: Replay) -> tuple[bytes, bytes]:
    """The recorded streams with the two adjustments the gateway makes.

    To the client: CLIENT_COMPRESS cleared in the greeting (payload byte 47). To the engine:
    capabilities masked with the engine's, which clears pymysql's and Connector/Python's
    CLIENT_LONG_PASSWORD (= CLIENT_MYSQL) bit in the SSLRequest and the login packet.
    """
    client = bytearray(replay.recorded_client)
    client[4 + 47] &= ~0x20
    engine = bytearray(replay.recorded_engine)
    reader = PacketBuffer()
    reader.feed(bytes(engine))
    offset = 0
    for _ in range(2):
        packet = reader.next_packet()
        if packet is None:
            break
        if packet.seq in (1, 2) and len(packet.payload) >= 32:
            engine[offset + 4] &= ~0x01
        offset += len(packet.raw)
    return bytes(client), bytes(engine)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_relay_reproduces_recorded_conversation(name: str) -> None:
    replay = Replay(CONVERSATIONS[name]).run()
    client, engine = _expected_streams(replay)
    assert bytes(replay.to_client) == client
    assert bytes(replay.to_engine) == engine
    assert replay.relay.client.state in (ClientState.CLOSED, ClientState.COMMAND)
    assert replay.decisions[0].startswith("LoginRequested:")


def test_relay_sees_every_statement_and_login() -> None:
    r = Replay(CONVERSATIONS["pymysql_cleartext"]).run()
    assert r.decisions == [
        "LoginRequested:alice",
        "Query:SET NAMES utf8mb4",
        "Query:SET AUTOCOMMIT = 0",
        "Query:SELECT 1",
        "Query:LOAD DATA LOCAL INFILE '/tmp/mdbcap_tools/data.csv' INTO TABLE t FIELDS "
        "TERMINATED BY ','",
        "Query:SELEC 1",
    ]
    assert r.events.count("Continuation") == 2  # file content and its empty terminator
    assert r.events[-2:] == ["Quit", "ConnectionClosed"] or r.events[-1] == "Quit"

    r = Replay(CONVERSATIONS["connector_cleartext"]).run()
    assert r.decisions.count("ChangeUser:carol") == 2
    assert "Query:SELECT 'h\u00e9llo'" in r.decisions  # decoded in utf8mb4
    assert "Prepare:SELECT ? + 1" in r.decisions
    assert "ResetConnection" in r.decisions
    assert "Command:0x02" in r.decisions  # COM_INIT_DB
    assert "Command:0x0e" in r.decisions  # COM_PING
    assert "Command:0x17" in r.decisions  # COM_STMT_EXECUTE
    # the change of user that failed came back as an ERR and the session went on
    assert r.events.count("ErrPacket") == 1
    assert r.relay.engine.state is EngineState.CLOSED

    r = Replay(CONVERSATIONS["mariadb_cli_ed25519"]).run()
    assert "AuthSwitchRequest" in r.events and "AuthData" in r.events


def test_denied_logins_close_both_legs() -> None:
    for name in ("pymysql_denied", "mariadb_cli_ed25519_denied"):
        r = Replay(CONVERSATIONS[name]).run()
        assert r.closed
        assert r.relay.client.state is ClientState.CLOSED
        assert r.events[-1] == "ErrPacket"


def test_refused_statement_is_answered_in_order_by_the_engine() -> None:
    r = Replay(CONVERSATIONS["pymysql_cleartext"], refuse={"SELEC 1"}).run()
    # the statement never reached the engine: a SIGNAL with the refusal went in its place
    assert b"SELEC 1" not in r.to_engine
    signal = re.search(rb"SIGNAL SQLSTATE '42000' SET MYSQL_ERRNO = 1227, MESSAGE_TEXT = "
                       rb"_utf8mb4 X'([0-9a-f]+)'", bytes(r.to_engine))
    assert signal is not None
    assert bytes.fromhex(signal.group(1).decode()).startswith(b"Access denied; you need")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CONVERSATIONS)),
       split=st.lists(st.integers(1, 64), min_size=1, max_size=200))
def test_chunking_does_not_change_anything(name: str, split: list[int]) -> None:
    whole = Replay(CONVERSATIONS[name]).run()
    chunked = Replay(CONVERSATIONS[name], split=split).run()
    assert chunked.to_client == whole.to_client
    assert chunked.to_engine == whole.to_engine
    assert chunked.decisions == whole.decisions
    assert chunked.events == whole.events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CONVERSATIONS)), data=st.data())
def test_corrupted_conversations_fail_closed(name: str, data: st.DataObject) -> None:
    conversation = list(CONVERSATIONS[name])
    index = data.draw(st.integers(0, len(conversation) - 1))
    direction, chunk = conversation[index]
    if direction == "tls":
        return
    mutated = bytearray(chunk)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    conversation[index] = (direction, bytes(mutated))
    conversation = conversation[: index + 1 + data.draw(st.integers(0, 3))]
    try:
        Replay(conversation).run()
    except RemoteProtocolError:
        pass


# --- mysql_clear_password, gateway side -------------------------------------------------------


class ClearPasswordGateway:
    """What the IAM login does with a ClientFacing: switch to mysql_clear_password."""

    def __init__(self, greeting: bytes) -> None:
        self.conn = ClientFacing()
        self.out = bytearray()
        self.tokens: list[bytes] = []
        self.logins: list[LoginRequested] = []
        self.out += self.conn.send(InitialHandshake.parse(greeting[4:]))

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            if isinstance(event, SslRequested):
                self.conn.tls_established()
            elif isinstance(event, LoginRequested):
                self.logins.append(event)
                self.out += self.conn.send(AuthSwitchRequest("mysql_clear_password"))
            elif isinstance(event, AuthData):
                self.tokens.append(event.payload)
                self.out += self.conn.send(OkPacket())
            elif isinstance(event, Query):
                self.out += self.conn.send(ErrPacket(1105, "fake server"))
            elif isinstance(event, (Quit, ConnectionClosed)):
                return


@pytest.mark.parametrize("name", sorted(CLEAR_PASSWORD_CONVERSATIONS))
def test_clear_password_switch_with_real_clients(name: str) -> None:
    conversation = CLEAR_PASSWORD_CONVERSATIONS[name]
    gateway = ClearPasswordGateway(conversation[0][1])
    recorded = bytearray()
    for direction, data in conversation:
        if direction == "c2s":
            gateway.feed(data)
        elif direction == "s2c":
            recorded += data
    assert bytes(gateway.out) == bytes(recorded)
    assert gateway.tokens == [b"s3cret-token\x00"]  # the token and a NUL, as SPEC.md says
    login = gateway.logins[0]
    assert login.user == "iamuser"
    assert login.tls is (name != "mariadb_cli_cleartext")  # policy must refuse the other one


class HoldingReplay(Replay):
    """Holds every statement and change of user once (``HOLD``), releasing it only after more
    input has arrived (the gateway holds commands while dbkeep checks the grant tables)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.seen: set[int] = set()
        self.holds = 0

    def decide(self, event: object):
        if isinstance(event, (Query, ChangeUser)) and len(self.decisions) not in self.seen:
            self.seen.add(len(self.decisions))
            self.holds += 1
            return HOLD
        return super().decide(event)

    def _take(self, out: object) -> None:
        super()._take(out)
        if out.held:  # type: ignore[attr-defined]
            assert self.relay.held and self.relay.client_passthrough(b"\x01\x00\x00\x00\x0e", frozenset({0x0e})) is False

    def run(self) -> HoldingReplay:
        def engine_data(data, _feed=self.relay.engine_data):
            if self.relay.held:
                self._take(self.relay.release())
            return _feed(data)

        self.relay.engine_data = engine_data  # type: ignore[method-assign]
        super().run()
        while self.relay.held:
            self._take(self.relay.release())
        return self


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(n for n in CONVERSATIONS if "denied" not in n)),
       split=st.lists(st.integers(1, 64), max_size=100))
def test_held_commands_reach_the_engine_unchanged_once_released(name: str, split: list[int]) -> None:
    held = HoldingReplay(CONVERSATIONS[name], split=split).run()
    plain = Replay(CONVERSATIONS[name]).run()
    assert held.holds > 0
    assert bytes(held.to_engine) == bytes(plain.to_engine)
    assert bytes(held.to_client) == bytes(plain.to_client)
