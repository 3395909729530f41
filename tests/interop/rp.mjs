// A relying party built on openid-client (panva's OpenID Certified RP library), driving the
// identity server as an independent RP would: discovery, an authorization code flow with PKCE
// S256 + state + nonce, the token exchange (ID token signature against jwks_uri, iss, aud,
// nonce, and RFC 9207's `iss` authorization response parameter), userinfo, refresh, revocation.
//
// The browser's part (being signed in) is a session cookie given by the caller: the script
// performs GET /authorize itself with that cookie and takes the 302's Location as the callback.
//
//   node rp.mjs --issuer http://127.0.0.1:8000 --client-id ID [--client-secret S]
//               --auth basic|post|jwt|none --redirect-uri URI --cookie 'name=value; ...'
//               [--scope 'openid profile']
//
// Every option can also come from the environment: RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET,
// RP_AUTH, RP_REDIRECT_URI, RP_COOKIE, RP_SCOPE. Prints one JSON summary on stdout; exits 1
// (with the summary's `error` set) on the first failure.

import * as client from "openid-client";

function options(argv) {
  const found = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
      throw new Error(`bad argument: ${argv[i]}`);
    }
    found[argv[i].slice(2)] = argv[i + 1];
  }
  const pick = (name, env, fallback) => found[name] ?? process.env[env] ?? fallback;
  const given = {
    issuer: pick("issuer", "RP_ISSUER"),
    clientId: pick("client-id", "RP_CLIENT_ID"),
    clientSecret: pick("client-secret", "RP_CLIENT_SECRET"),
    auth: pick("auth", "RP_AUTH", "basic"),
    redirectUri: pick("redirect-uri", "RP_REDIRECT_URI"),
    cookie: pick("cookie", "RP_COOKIE"),
    scope: pick("scope", "RP_SCOPE", "openid profile email phone"),
  };
  for (const name of ["issuer", "clientId", "redirectUri", "cookie"]) {
    if (!given[name]) throw new Error(`missing option: ${name}`);
  }
  if (given.auth !== "none" && !given.clientSecret) {
    throw new Error(`--auth ${given.auth} needs --client-secret`);
  }
  return given;
}

function clientAuth(given) {
  switch (given.auth) {
    case "basic":
      return client.ClientSecretBasic(given.clientSecret);
    case "post":
      return client.ClientSecretPost(given.clientSecret);
    case "jwt":
      return client.ClientSecretJwt(given.clientSecret);
    case "none":
      return client.None();
    default:
      throw new Error(`unknown --auth ${given.auth} (basic, post, jwt or none)`);
  }
}

async function run(given, summary) {
  const issuer = new URL(given.issuer);
  const insecure = issuer.protocol === "http:"; // loopback in the tests
  const config = await client.discovery(issuer, given.clientId, undefined, clientAuth(given), {
    execute: insecure ? [client.allowInsecureRequests] : [],
  });
  const metadata = config.serverMetadata();
  summary.steps.push("discovery");
  summary.discovery = {
    issuer: metadata.issuer,
    authorization_response_iss_parameter_supported:
      metadata.authorization_response_iss_parameter_supported ?? false,
  };

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: given.redirectUri,
    scope: given.scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
  });

  // The browser's part: the signed-in person's cookie, the redirect not followed.
  const answer = await fetch(authorizationUrl, {
    headers: { cookie: given.cookie },
    redirect: "manual",
  });
  const location = answer.headers.get("location");
  if (answer.status !== 302 || !location) {
    const body = (await answer.text()).slice(0, 500);
    throw new Error(`GET /authorize answered ${answer.status} (location ${location}): ${body}`);
  }
  const callback = new URL(location, authorizationUrl);
  summary.steps.push("authorize");
  summary.callback = Object.fromEntries(
    [...callback.searchParams].map(([key, value]) => [key, key === "code" ? "..." : value]),
  );

  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  summary.steps.push("authorization_code");
  summary.claims = claims;
  summary.token_type = tokens.token_type;
  summary.scope = tokens.scope ?? null;
  summary.refresh_token_issued = Boolean(tokens.refresh_token);

  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  summary.steps.push("userinfo");
  summary.userinfo = userinfo;

  if (!tokens.refresh_token) throw new Error("no refresh_token in the token response");
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  summary.steps.push("refresh_token");
  summary.refreshed = {
    access_token_changed: refreshed.access_token !== tokens.access_token,
    refresh_token_rotated:
      Boolean(refreshed.refresh_token) && refreshed.refresh_token !== tokens.refresh_token,
    id_token_sub: refreshed.claims()?.sub ?? null,
  };
  const refreshedUserinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  summary.steps.push("userinfo_after_refresh");
  summary.refreshed.userinfo_sub = refreshedUserinfo.sub;

  const latest = refreshed.refresh_token ?? tokens.refresh_token;
  await client.tokenRevocation(config, latest, { token_type_hint: "refresh_token" });
  summary.steps.push("revocation");
  try {
    await client.refreshTokenGrant(config, latest);
    summary.revoked_refresh_token_refused = false;
  } catch (error) {
    summary.revoked_refresh_token_refused = true;
    summary.revoked_refresh_token_error = error.error ?? error.code ?? String(error.message);
  }
  summary.steps.push("refresh_after_revocation");
}

// What went wrong, as far as the library tells: its error code, the OAuth error (from the body
// or, for a 401, from the WWW-Authenticate challenge), the HTTP status and the body.
async function describe(error) {
  const challenges = Array.isArray(error.cause) ? error.cause : null; // WWW-Authenticate
  const response = error.response instanceof Response ? error.response : null;
  let body = null;
  if (response && !response.bodyUsed) {
    body = (await response.text().catch(() => "")).slice(0, 500) || null;
  }
  return {
    name: error.name,
    code: error.code ?? null,
    message: String(error.message),
    error: error.error ?? challenges?.[0]?.parameters?.error ?? null,
    error_description:
      error.error_description ?? challenges?.[0]?.parameters?.error_description ?? null,
    status: error.status ?? response?.status ?? null,
    challenges,
    body,
    cause:
      error.cause && !challenges && !(error.cause instanceof Response)
        ? JSON.stringify(error.cause)
        : null,
  };
}

const summary = { ok: false, steps: [] };
let code = 0;
try {
  const given = options(process.argv.slice(2));
  summary.client_id = given.clientId;
  summary.auth = given.auth;
  await run(given, summary);
  summary.ok = true;
} catch (error) {
  code = 1;
  summary.error = await describe(error);
}
process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
process.exit(code);
