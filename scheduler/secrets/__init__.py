"""Secrets: an encrypted store in the scheduler, referenced by apps and jobs, delivered in the launch only.

`store` keeps them (sealed with `crypto`'s key file, checked against `acl`),
`refs` says where an app or a job uses them, `api` serves DC/OS's
`/secrets/v1` paths, `cli` is `dockyard secret ...`. docs/secrets.md tells the
whole path of a value, and everywhere it must never show.

Nothing is imported here: the CLI and the API's common helpers import `refs`
and `cli` alone, without the cryptography the store needs.
"""
