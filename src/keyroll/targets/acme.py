"""An ACME CA (RFC 8555: Let's Encrypt, ZeroSSL, step-ca, pebble), through certbot's own
``acme`` and ``josepy`` libraries (extra ``acme``, imported on first use).

`AcmeClient` does what one certificate order needs, in steps a crash can resume: register (or
find) the account of a key, create an order, answer its HTTP-01 challenges through a
`keyroll.targets.http01.Responder`, finalize it with a CSR, read an order back by its URL
(status, certificate URL), download the chain, and revoke a certificate. It keeps no state:
the caller stores the order URL before each step that the CA remembers.

Every error of the libraries and of the network is translated here, once, into a one-line
`TargetError` that names the ACME problem type (``rateLimited``, ``rejectedIdentifier`` …), the
server's detail and what to do; nothing above this module sees an ``acme``, ``josepy`` or
``requests`` exception. Private keys never leave this process: the CA sees signatures, the
account's public key and CSRs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from keyroll.errors import TargetError, UsageError
from keyroll.model import SecretValue
from keyroll.targets.http01 import Responder

__all__ = ["AcmeClient", "Order", "hint_for"]

_POLL = 0.2
_MAX_POLLS = 600  # 2 minutes at the default poll: pebble answers in well under a second

_HINTS = {
    "rateLimited": "the CA limits how often it issues for these names or this account: wait "
                   "until the limit resets (see the CA's rate-limit docs), then run "
                   "`keyroll advance` again",
    "rejectedIdentifier": "the CA will not issue for these names: check options.domains",
    "malformed": "the CA could not read the request (for an order: check options.domains)",
    "unauthorized": "the CA would not accept the challenge answer: check that "
                    "options.http01 serves /.well-known/acme-challenge/ for every name",
    "incorrectResponse": "the HTTP-01 responder answered with the wrong content: check "
                         "options.http01",
    "connection": "the CA could not connect to the HTTP-01 responder: check DNS and that "
                  "port 80 (options.http01) reaches it",
    "dns": "the CA could not resolve a name: check the DNS records of options.domains",
    "caa": "a CAA record forbids this CA: fix the domain's CAA records",
    "badCSR": "the CA refused the CSR: check options.key_type",
    "accountDoesNotExist": "the CA does not know the account: keyroll registers a new one on "
                           "the next run",
    "serverInternal": "the CA failed: try again later",
}


def hint_for(code: str | None) -> str:
    """What to do about an ACME problem type (``rateLimited`` …), or a general hint."""
    return _HINTS.get(code or "", "see the CA's message above")


def _libs() -> tuple[Any, Any, Any, Any, Any]:
    try:
        import josepy
        import requests
        from acme import client, errors, messages
    except ImportError:
        raise UsageError("TLS certificates need the ACME client: pip install 'keyroll[acme]'"
                         ) from None
    return client, errors, messages, josepy, requests


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the CA reports it (RFC 8555 §7.1.3).

    Attributes:
        url: the order's URL (what the caller stores to resume).
        status: ``pending``, ``ready``, ``processing``, ``valid`` or ``invalid``.
        certificate: the certificate's URL once ``valid``.
        error: the CA's problem for an ``invalid`` order, one line.
        names: the identifiers ordered.
    """

    url: str
    status: str
    certificate: str | None
    error: str | None
    names: tuple[str, ...]


class AcmeClient:
    """One ACME directory, as one account (the key in ``account_key``).

    Args:
        directory_url: the CA's directory URL (https).
        account_key: the account's private key (PKCS#8 PEM; EC P-256 signs ES256, RSA RS256).
        ca_bundle: a PEM file that verifies the CA's HTTPS (default: the system's trust).
        timeout: seconds per HTTP request.
        sleep, poll: how polls wait (tests pass their own).

    Raises:
        UsageError: the extra is not installed.
        TargetError: the directory cannot be read.
    """

    def __init__(self, directory_url: str, account_key: SecretValue, *,
                 ca_bundle: str | None = None, timeout: int = 30,
                 sleep: Callable[[float], None] = time.sleep, poll: float = _POLL) -> None:
        client, _errors, messages, josepy, _requests = _libs()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.directory_url = directory_url
        self._messages = messages
        self._sleep = sleep
        self._poll = poll
        with self._translate("read the directory"):
            private = serialization.load_pem_private_key(account_key.reveal_bytes(), None)
            if isinstance(private, ec.EllipticCurvePrivateKey):
                jwk, alg = josepy.JWKEC(key=private), josepy.ES256
            else:
                jwk, alg = josepy.JWKRSA(key=private), josepy.RS256
            self._net = client.ClientNetwork(jwk, alg=alg, user_agent="keyroll",
                                             timeout=timeout)
            if ca_bundle is not None:
                # requests takes a CA file where the library expects a bool
                self._net.verify_ssl = ca_bundle
            self._directory = client.ClientV2.get_directory(directory_url, self._net)
            self._client = client.ClientV2(self._directory, self._net)
        self.account_url: str | None = None

    def close(self) -> None:
        self._net.session.close()

    def __enter__(self) -> AcmeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- errors -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Every library and network error as one `TargetError` line."""
        _client, errors, messages, josepy, requests = _libs()
        try:
            yield
        except TargetError:
            raise
        except messages.Error as exc:
            code = exc.code or "error"
            detail = " ".join(str(exc.detail or exc.description or "").split())[:300]
            raise TargetError(f"ACME {what}: the CA refused ({code}): {detail}; "
                              f"{hint_for(exc.code)}") from None
        except errors.ValidationError as exc:
            raise TargetError(f"ACME {what}: a challenge failed: {_validation_detail(exc)}"
                              ) from None
        except errors.IssuanceError as exc:
            error = exc.error
            code = getattr(error, "code", None)
            detail = " ".join(str(getattr(error, "detail", "") or "").split())[:300]
            raise TargetError(f"ACME {what}: the CA did not issue ({code}): {detail}; "
                              f"{hint_for(code)}") from None
        except errors.TimeoutError:
            raise TargetError(f"ACME {what}: the CA did not answer in time; "
                              "`keyroll advance` resumes the order") from None
        except requests.RequestException as exc:
            raise TargetError(f"ACME {what}: cannot reach {self.directory_url} "
                              f"({type(exc).__name__}); check the URL, the network and "
                              "options.ca_bundle") from None
        except (errors.Error, josepy.errors.Error, ValueError, KeyError) as exc:
            raise TargetError(f"ACME {what}: unexpected answer from {self.directory_url} "
                              f"({type(exc).__name__})") from None

    # --- account ----------------------------------------------------------------------------

    def register(self, contact: str | None = None) -> str:
        """Register the account key, or find its existing account; return the account URL
        (RFC 8555 §7.3: a known key gets its account back, no duplicate is made)."""
        _client, errors, messages, _josepy, _requests = _libs()
        with self._translate("register the account"):
            registration = messages.NewRegistration.from_data(
                email=contact.removeprefix("mailto:") if contact else None,
                terms_of_service_agreed=True)
            self._net.account = None  # newAccount is signed with the JWK, not a kid
            try:
                account = self._client.new_account(registration)
            except errors.ConflictError as exc:  # the key has an account: use it
                account = messages.RegistrationResource(uri=exc.location,
                                                        body=messages.Registration())
                self._net.account = account
            self.account_url = str(account.uri)
            return self.account_url

    # --- orders -----------------------------------------------------------------------------

    def _get(self, url: str) -> Any:
        """POST-as-GET (RFC 8555 §6.3), signed by the account."""
        return self._net.post(url, None, new_nonce_url=self._directory["newNonce"])

    def _order_from(self, url: str, body: Any) -> Order:
        error = None
        if body.error is not None:
            error = (f"{body.error.code or 'error'}: "
                     + " ".join(str(body.error.detail or "").split())[:300])
        return Order(url, str(body.status.name if hasattr(body.status, "name") else body.status),
                     body.certificate, error,
                     tuple(str(i.value) for i in body.identifiers or ()))

    def new_order(self, csr_pem: bytes) -> Order:
        """Create an order for the CSR's names (nothing is issued until `finalize`)."""
        with self._translate("create the order"):
            order = self._client.new_order(csr_pem)
            if not order.uri:
                raise TargetError("ACME create the order: the CA sent no order URL")
            return self._order_from(str(order.uri), order.body)

    def order(self, url: str) -> Order:
        """Read an order back (to resume after a crash)."""
        with self._translate("read the order"):
            return self._order_from(url, self._messages.Order.from_json(self._get(url).json()))

    def orders(self, *, max_pages: int = 100) -> list[Order]:
        """Every order of the account (RFC 8555 §7.1.2.1, pages followed): what a person
        reconciling a crash compares with the store. Call `register` first."""
        if self.account_url is None:
            raise TargetError("ACME list the orders: register the account first")
        found: list[Order] = []
        with self._translate("list the orders"):
            url: str | None = self._get(self.account_url).json().get("orders")
            for _ in range(max_pages):
                if not url:
                    break
                response = self._get(url)
                found += [self.order(str(u)) for u in response.json().get("orders", [])]
                url = response.links.get("next", {}).get("url")
        return found

    def authorize(self, url: str, responder: Responder) -> list[str]:
        """Answer every pending authorization of the order with HTTP-01 and wait until each
        is valid; return the names it proved. Authorizations already valid are skipped (a
        rerun after a crash answers only what is left)."""
        messages = self._messages
        from acme import challenges

        proved = []
        with self._translate("validate the names"):
            body = messages.Order.from_json(self._get(url).json())
            for authz_url in body.authorizations:
                authz = messages.Authorization.from_json(self._get(authz_url).json())
                name = str(authz.identifier.value)
                if authz.status == messages.STATUS_PENDING:
                    chall = next((c for c in authz.challenges
                                  if isinstance(c.chall, challenges.HTTP01)), None)
                    if chall is None:
                        raise TargetError(f"ACME validate the names: the CA offers no HTTP-01 "
                                          f"challenge for {name}")
                    response, validation = chall.response_and_validation(self._net.key)
                    responder.add(chall.chall.encode("token"), validation)
                    if chall.status == messages.STATUS_PENDING:
                        self._client.answer_challenge(chall, response)
                    authz = self._wait_authz(authz_url, name)
                if authz.status != messages.STATUS_VALID:
                    raise TargetError(f"ACME validate the names: {name} is {authz.status}: "
                                      f"{_challenge_errors(authz)}")
                proved.append(name)
        return proved

    def _wait_authz(self, url: str, name: str) -> Any:
        messages = self._messages
        for _ in range(_MAX_POLLS):
            authz = messages.Authorization.from_json(self._get(url).json())
            if authz.status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                return authz
            self._sleep(self._poll)
        raise TargetError(f"ACME validate the names: {name} stayed pending; `keyroll advance` "
                          "resumes the order")

    def finalize(self, url: str, csr_pem: bytes) -> Order:
        """Send the CSR (the CA issues now) and wait until the order is ``valid``."""
        messages = self._messages
        with self._translate("finalize the order"):
            body = messages.Order.from_json(self._get(url).json())
            if body.status == messages.STATUS_READY:
                from cryptography import x509

                request = messages.CertificateRequest(csr=x509.load_pem_x509_csr(csr_pem))
                self._client._post(body.finalize, request)
        return self.wait_issued(url)

    def wait_issued(self, url: str) -> Order:
        """Poll an order until it is no longer ``processing`` (``valid`` with a certificate
        URL, or ``invalid``, or still ``ready``/``pending`` when it was never finalized)."""
        order = self.order(url)
        for _ in range(_MAX_POLLS):
            if order.status != "processing" and not (order.status == "valid"
                                                     and not order.certificate):
                return order
            self._sleep(self._poll)
            order = self.order(url)
        raise TargetError("ACME finalize the order: the CA is still processing it; "
                          "`keyroll advance` resumes the order")

    def certificate(self, order: Order) -> str:
        """The certificate chain of a ``valid`` order (PEM, leaf first)."""
        if order.status != "valid" or not order.certificate:
            raise TargetError(f"ACME download the certificate: the order is {order.status}")
        with self._translate("download the certificate"):
            text: str = self._get(order.certificate).text
            return text

    def revoke(self, chain_pem: str, reason: int) -> None:
        """Revoke the leaf of ``chain_pem`` (RFC 5280 reason: 1 keyCompromise, 4 superseded),
        signed by the account that ordered it."""
        from cryptography import x509

        with self._translate("revoke the certificate"):
            self._client.revoke(x509.load_pem_x509_certificate(chain_pem.encode()), reason)


def _challenge_errors(authz: Any) -> str:
    found = []
    for chall in authz.challenges:
        if chall.error is not None:
            detail = " ".join(str(chall.error.detail or "").split())[:300]
            found.append(f"{chall.error.code}: {detail}; {hint_for(chall.error.code)}")
    return "; ".join(found) or "no detail from the CA"


def _validation_detail(exc: Any) -> str:
    return "; ".join(_challenge_errors(a) for a in getattr(exc, "failed_authzrs", ())) \
        or "no detail from the CA"
