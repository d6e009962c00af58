"""`kpdigest users ...`: editors and admins of the web desk."""

from __future__ import annotations

import sys

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.group()
def users() -> None:
    """Add and list the desk's users."""


def _password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@users.command()
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "editor"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--reset", is_flag=True, help="Set a new password (and role) for an existing user.")
@pass_ctx
def add(obj: Lazy, email: str, role: str, password_stdin: bool, reset: bool) -> None:
    """Add a user; the password is prompted for (or read from stdin), never an argument."""
    from core.accounts import add_user, set_password

    ctx = get(obj)
    ctx.require_schema()
    password = _password(password_stdin)
    if reset:
        set_password(ctx, email, password, role)
        click.echo(f"{email}: password and role ({role}) updated")
        return
    uid = add_user(ctx, email, password, role)
    click.echo(f"user {uid}: {email} ({role})")


@users.command(name="list")
@pass_ctx
def list_(obj: Lazy) -> None:
    """Every user with their role and last login."""
    from core.accounts import list_users

    ctx = get(obj)
    ctx.require_schema()
    for u in list_users(ctx):
        seen = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
        click.echo(f"{u.id:>4}  {u.role:<7} {u.email}  (last login {seen})")


def register(group: click.Group) -> None:
    group.add_command(users)
