"""MySQL and MariaDB as a rotation target (extra ``mysql``): see `keyroll.targets.mysql.accounts`.

`accounts` holds `MySQLTarget` (accounts, passwords, grants, sessions), `grants` the
``SHOW GRANTS`` lines compared and rewritten, `statements` every account statement keyroll
sends, `server` the variant/version detection (dual passwords), `_driver` PyMySQL, its errors,
the account rule and the admin URL.
"""

from keyroll.targets.mysql._driver import URL_SHAPE as URL_SHAPE
from keyroll.targets.mysql._driver import Account as Account
from keyroll.targets.mysql._driver import AdminURL as AdminURL
from keyroll.targets.mysql._driver import account_problem as account_problem
from keyroll.targets.mysql._driver import parse_url as parse_url
from keyroll.targets.mysql._driver import url_secrets as url_secrets
from keyroll.targets.mysql.accounts import LoginCheck as LoginCheck
from keyroll.targets.mysql.accounts import MirrorResult as MirrorResult
from keyroll.targets.mysql.accounts import MySQLTarget as MySQLTarget
from keyroll.targets.mysql.accounts import PrivilegeReport as PrivilegeReport
from keyroll.targets.mysql.accounts import RetireMode as RetireMode
from keyroll.targets.mysql.accounts import RetireResult as RetireResult
from keyroll.targets.mysql.server import ServerInfo as ServerInfo

__all__ = [
    "URL_SHAPE",
    "Account",
    "AdminURL",
    "LoginCheck",
    "MirrorResult",
    "MySQLTarget",
    "PrivilegeReport",
    "RetireMode",
    "RetireResult",
    "ServerInfo",
    "account_problem",
    "parse_url",
    "url_secrets",
]
