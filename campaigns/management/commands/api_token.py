"""Personal API tokens: `api_token create USERNAME [--name N] [--expires DAYS]` prints the new token as
its last line (it is shown only once); `api_token list [USERNAME]`; `api_token revoke TOKEN_ID`."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from campaigns.api import tokens
from campaigns.models import ApiToken


class Command(BaseCommand):
    help = "Create, list and revoke personal API tokens (docs/api.md)."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        create = commands.add_parser("create", help="A new token for USERNAME, printed once as the last line.")
        create.add_argument("username")
        create.add_argument("--name", default="", help="What it is for.")
        create.add_argument("--expires", type=int, default=None, metavar="DAYS", help="Expires after DAYS days.")
        listing = commands.add_parser("list", help="Tokens (of USERNAME when given): never the tokens themselves.")
        listing.add_argument("username", nargs="?")
        revoke = commands.add_parser("revoke", help="Revoke the token with this id (see list).")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args, command, **options):
        return getattr(self, f"do_{command}")(**options)

    def do_create(self, username, name, expires, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not (user.is_active and user.is_staff):
            raise CommandError(f"{username} is not an active staff user: the API is for staff.")
        try:
            row, token = tokens.create_token(user, name, expires)
        except ValueError as error:
            raise CommandError(str(error))
        expiry = f", expires {timezone.localtime(row.expires_at):%Y-%m-%d %H:%M %Z}" if row.expires_at else ""
        self.stdout.write(f"Token {row.pk} for {username}{expiry}. It is shown only now; keep it secret:")
        self.stdout.write(token)

    def do_list(self, username=None, **options):
        rows = ApiToken.objects.select_related("user").order_by("user__username", "-created_at")
        if username:
            rows = rows.filter(user__username=username)
        now = timezone.now()
        for row in rows:
            state = ("revoked" if row.revoked_at else "expired" if row.expires_at and row.expires_at <= now
                     else "active")
            last = timezone.localtime(row.last_used_at).strftime("%Y-%m-%d %H:%M") if row.last_used_at else "never"
            self.stdout.write(f"{row.pk}\t{row.user.username}\t{row.prefix}…\t{row.name or '-'}\t{state}\t"
                              f"last used {last}")

    def do_revoke(self, token_id, **options):
        if not tokens.revoke(token_id):
            raise CommandError(f"No active token with id {token_id}.")
        self.stdout.write(f"Token {token_id} revoked.")
