"""Which account a contact belongs to: its explicit account, else the domain of its
business e-mail address. Apart from the account table (scoring.accounts) because the
engine names the account in every snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from leadpulse.scoring.state import ContactState

MAX_ACCOUNT_ID = 256  # characters, as contact ids: an account id is a Kafka key and a URL segment


@dataclass(frozen=True)
class FreeMail:
    """Domains that never make an account (`freemail.txt`): exact names, and `name.*`
    entries that match the name under any top-level domain."""

    exact: frozenset[str]
    any_tld: frozenset[str]

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str):
            return False
        if domain in self.exact:
            return True
        name, _, rest = domain.partition(".")
        return bool(rest) and name in self.any_tld


@cache
def free_mail() -> FreeMail:
    text = resources.files("leadpulse.scoring").joinpath("freemail.txt").read_text("utf-8")
    entries = [line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return FreeMail(
        frozenset(entry for entry in entries if not entry.endswith(".*")),
        frozenset(entry[:-2] for entry in entries if entry.endswith(".*")),
    )


def email_domain(value: str) -> str | None:
    """The lower-case domain of something that looks like an e-mail address, else None."""
    local, at, domain = value.strip().rpartition("@")
    domain = domain.lower().rstrip(".")
    if not at or not local or "." not in domain or any(c.isspace() or c in "@/\\" for c in domain):
        return None
    if domain.startswith(".") or ".." in domain:
        return None
    return domain


def business_domain(value: str | None) -> str | None:
    """The domain of a business e-mail address; None for free mail and non-addresses."""
    domain = None if value is None else email_domain(value)
    return None if domain is None or domain in free_mail() else domain


def account_of(contact_id: str, explicit: str | None = None, email: str | None = None) -> str | None:
    """The account a contact belongs to: its latest explicit `account_id`, else the domain
    of its latest `email` property, else of its id, when that is a business address."""
    if explicit is not None and explicit.strip() and len(explicit.strip()) <= MAX_ACCOUNT_ID:
        return explicit.strip()
    domain = business_domain(email) or business_domain(contact_id)
    return domain if domain is not None and len(domain) <= MAX_ACCOUNT_ID else None


def account_of_state(state: ContactState) -> str | None:
    """The contact's account: what its snapshot's `account_id` says and its member record goes to."""
    explicit, email = state.account, state.email
    return account_of(
        state.contact_id,
        None if explicit is None else str(explicit.value),
        None if email is None else str(email.value),
    )
