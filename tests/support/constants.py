"""The fixed values the suites share: secret, issuer, the test user's phone, the relying
party's URLs, the WeCom corporations and the admin's credentials."""

TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"
ISSUER = "https://testserver"

PHONE = "+8613800138000"
RP_REDIRECT = "https://rp.example/cb"
RP_LOGOUT = "https://rp.example/logged-out"
PUBLIC_REDIRECT = "http://127.0.0.1:8765/callback"

WECOM_BASE = "https://wecom.test"
CORP_A = "wwsubsidiarya0001"
CORP_B = "wwsubsidiaryb0002"

ADMIN_USER = "root"
ADMIN_PASSWORD = "a long admin passphrase"
