"""iam: an OpenID Connect provider that federates several WeCom corporations."""
