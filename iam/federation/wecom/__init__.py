"""WeCom (企业微信): the server-API client and the access-token caches it shares."""
