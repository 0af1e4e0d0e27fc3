"""The fraud team's review console (SPEC §1, §6): server-rendered HTML under `/console/` on the
admin port.

- `app`: the factory and its middleware (session, HTML errors, security headers).
- `sessions`: login sessions in Redis and CSRF tokens; `guard`: who may see a page or send a form.
- `pages`: the queue, a case, a license, the dashboard; `forms`: login, logout, case actions
  (through `fraud.review.actions`, the JSON API's code path); `tokens`: admins' API tokens.
- `views` (pure) shapes what the templates show; `dashboard` reads the dashboard's figures.
"""

from fraud.console.app import create_console_app

__all__ = ["create_console_app"]
