"""The issuer: the only package that imports authlib.oauth2 / authlib.oidc server classes."""
