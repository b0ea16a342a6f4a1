"""Account operations: sign-in, second factor, passwords, roles, deactivation.

Each operation changes state, writes its audit event and leaves the commit to
the caller, so a view commits the change and its audit row together.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import func, select, update

from portal import clock
from portal.audit.operations import record
from portal.auth import passwords, totp
from portal.auth.models import AccountLink, Role, User
from portal.errors import AuthenticationFailed, Conflict, InvalidInput
from portal.extensions import db


def normalise_email(email: str) -> str:
    return email.strip().lower()


def find_user(email: str) -> User | None:
    """Return the account with this email, whatever its case."""
    return db.session.scalars(
        select(User).where(func.lower(User.email) == normalise_email(email))
    ).first()


def check_password_policy(password: str) -> None:
    """:raise InvalidInput: the password is too short or too long."""
    if len(password) < passwords.MIN_LENGTH:
        raise InvalidInput(f"Use at least {passwords.MIN_LENGTH} characters.")
    if len(password) > passwords.MAX_LENGTH:
        raise InvalidInput(f"Use at most {passwords.MAX_LENGTH} characters.")


def create_user(email: str, name: str, role: Role | str, password: str, actor=None) -> User:
    """Create an account; :raise Conflict: the email is taken."""
    email = normalise_email(email)
    if find_user(email) is not None:
        raise Conflict("An account with this email already exists.")
    check_password_policy(password)
    user = User(
        email=email,
        name=name.strip(),
        role=Role(role).value,
        password_hash=passwords.hash_password(password),
    )
    db.session.add(user)
    db.session.flush()
    record("user.created", actor or user, target=f"user:{user.id}", role=user.role)
    return user


def authenticate(email: str, password: str) -> User:
    """Check a password sign-in, counting failures and locking the account.

    :raise AuthenticationFailed: wrong email or password, locked or inactive.
    """
    user = find_user(email)
    if user is None:
        passwords.burn_time(password)
        record(
            "login.failed", target=f"email:{normalise_email(email)[:200]}", reason="unknown account"
        )
        raise AuthenticationFailed("Wrong email or password.")
    now = clock.now()
    refuse_if_locked(user, now)
    if not passwords.verify_password(user.password_hash, password):
        count_failure(user, now, "wrong password")
        raise AuthenticationFailed("Wrong email or password.")
    if not user.active:
        record("login.failed", user, target=f"user:{user.id}", reason="deactivated")
        raise AuthenticationFailed("This account has been deactivated.")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def refuse_if_locked(user: User, now: datetime) -> None:
    """:raise AuthenticationFailed: the account is locked after too many failures."""
    if user.locked_until is not None and user.locked_until > now:
        record("login.failed", user, target=f"user:{user.id}", reason="locked")
        raise AuthenticationFailed(
            "Too many failed sign-ins. This account is locked for a while; try again later "
            "or reset your password."
        )


def count_failure(user: User, now: datetime, reason: str) -> None:
    user.failed_logins += 1
    record(
        "login.failed", user, target=f"user:{user.id}", reason=reason, failures=user.failed_logins
    )
    if user.failed_logins >= current_app.config["LOGIN_MAX_FAILURES"]:
        user.locked_until = now + current_app.config["LOGIN_LOCKOUT"]
        user.failed_logins = 0
        record("login.locked", user, target=f"user:{user.id}", until=user.locked_until.isoformat())


def check_second_factor(user: User, code: str) -> None:
    """:raise AuthenticationFailed: the TOTP code is wrong or replayed, or the account locked."""
    now = clock.now()
    refuse_if_locked(user, now)
    step = totp.matching_step(user.totp_secret or "", code, user.totp_last_step)
    if step is None:
        count_failure(user, now, "wrong code")
        raise AuthenticationFailed("That code is not valid. Codes change every 30 seconds.")
    user.totp_last_step = step


def reauthenticate(user: User, password: str = "", code: str = "") -> str:
    """Check a signed-in user again, by password or TOTP code (before a signature).

    Failures count toward the lockout like sign-in failures do.

    :return: ``"password"`` or ``"totp"``, whichever was given.
    :raise InvalidInput: neither or both were given.
    :raise AuthenticationFailed: wrong or replayed, no authenticator set up, or locked.
    """
    code = code.strip()
    if bool(password) == bool(code):
        raise InvalidInput("Enter either your password or the code from your app.")
    now = clock.now()
    refuse_if_locked(user, now)
    if code:
        if not user.totp_enrolled:
            raise AuthenticationFailed("You have no authenticator app set up; use your password.")
        step = totp.matching_step(user.totp_secret or "", code, user.totp_last_step)
        if step is None:
            count_failure(user, now, "wrong code at a re-check")
            raise AuthenticationFailed("That code is not valid. Codes change every 30 seconds.")
        user.totp_last_step = step
        return "totp"
    if not passwords.verify_password(user.password_hash, password):
        count_failure(user, now, "wrong password at a re-check")
        raise AuthenticationFailed("Wrong password.")
    return "password"


def enrol_totp(user: User, secret: str, code: str) -> None:
    """Turn on TOTP once the user proves their app holds ``secret``."""
    step = totp.matching_step(secret, code, None)
    if step is None:
        raise InvalidInput("That code does not match. Check the time on your phone and retry.")
    user.totp_secret = secret
    user.totp_last_step = step
    user.totp_enabled_at = clock.now()
    record("totp.enrolled", user, target=f"user:{user.id}")


def finish_login(user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    record("login.success", user, target=f"user:{user.id}")


def change_password(user: User, current: str, new: str) -> None:
    """Change a password after checking the current one; other sessions end."""
    if not passwords.verify_password(user.password_hash, current):
        record("password.change_failed", user, target=f"user:{user.id}")
        raise AuthenticationFailed("Your current password is not right.")
    set_password(user, new)
    record("password.changed", user, target=f"user:{user.id}")


def set_password(user: User, new: str) -> None:
    """Set a new password; the user's sessions and open reset links end."""
    check_password_policy(new)
    user.password_hash = passwords.hash_password(new)
    user.session_version += 1
    user.failed_logins = 0
    user.locked_until = None
    db.session.execute(
        update(AccountLink)
        .where(
            AccountLink.purpose == "reset",
            AccountLink.user_id == user.id,
            AccountLink.used_at.is_(None),
            AccountLink.revoked_at.is_(None),
        )
        .values(revoked_at=clock.now())
    )


def set_role(admin: User, user: User, role: Role | str) -> None:
    """Change a user's role; their sessions end so the new role applies at once."""
    role = Role(role)
    if user.id == admin.id:
        raise Conflict("You cannot change your own role.")
    old = user.role
    if old == role.value:
        return
    user.role = role.value
    user.session_version += 1
    if role.needs_totp and not user.totp_enrolled:
        user.totp_secret = None
    record("user.role_changed", admin, target=f"user:{user.id}", old=old, new=role.value)


def set_active(admin: User, user: User, active: bool) -> None:
    """Deactivate (ending every session) or reactivate an account."""
    if user.id == admin.id:
        raise Conflict("You cannot deactivate your own account.")
    if user.active == active:
        return
    user.active = active
    user.session_version += 1
    record("user.reactivated" if active else "user.deactivated", admin, target=f"user:{user.id}")
