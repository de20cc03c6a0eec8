"""Who may call a dockyard component, over what, and with which rights.

One package for every server and client, so the master, the agents, the
scheduler and the CLI decide the same way (docs/security.md):

- `credentials`: Mesos's credentials files, Marathon's `user:password`, roles.
- `authn`: principals, HTTP Basic and executor JWTs, realms and their 401s.
- `acls`: the Mesos local authorizer's ACL format and its match rules.
- `tokens`: executor tokens (HS256 JWTs with Mesos's claims).
- `tls`: server and client TLS contexts from flags and `LIBPROCESS_SSL_*`.
- `gate`: route access levels and the Starlette guard that enforces them.
- `bundle`: what `up`, the lab and Vagrant generate (CA, certificates, secrets).
- `client`: the CLI's settings (`client.json`).
- `peer`: how a component calls the others (its principal, TLS, mutual TLS).
- `binding`: the refusal to serve a network address open.

Nothing is imported here: the executor reads only `tls` (standard library),
and must not pay for PyJWT, cryptography or Starlette at start-up.
"""
