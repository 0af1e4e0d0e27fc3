"""HTTP plumbing shared by every port (public API, admin API, console, the worker's health
port): problem JSON answers, the connection handling of the servers, `Expect` handling. It
knows no route of any app, so it imports nothing from activation/api, activation/admin or fraud/."""
