"""The fraud team's review of cases (SPEC §6): the queue, a case's page, and team actions.

- `queries`: PostgreSQL reads (the queue ordered by severity and deadline, a case's timeline,
  notifications, phone task and steps) and the row → `fraud.cases.Case` mapping.
- `persist`: PostgreSQL writes of one team action, in the caller's transaction.
- `summary`: the JSON item of a case (pure) and the Redis side written after the commit (the
  case summary the activation answers report, and the license document).

The rules themselves are `fraud.cases.apply_action`; nothing here decides what an action does.
"""
