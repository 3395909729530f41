"""The message catalogue (zh-CN, en) and the choice of language for a request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "iam_lang"

MESSAGES: dict[str, dict[str, str]] = {
    "app.name": {"en": "Group sign-in", "zh-CN": "集团统一登录"},
    "lang.switch": {"en": "中文", "zh-CN": "English"},
    "login.title": {"en": "Sign in", "zh-CN": "登录"},
    "login.for_app": {"en": "to continue to {app}", "zh-CN": "以继续使用 {app}"},
    "login.phone": {"en": "Mobile phone number", "zh-CN": "手机号码"},
    "login.phone_hint": {
        "en": "11-digit mainland number or international form (+86...)",
        "zh-CN": "11 位大陆手机号，或国际格式（+86...）",
    },
    "login.send_code": {"en": "Send code", "zh-CN": "获取验证码"},
    "login.code": {"en": "Code from the SMS", "zh-CN": "短信验证码"},
    "login.submit": {"en": "Sign in", "zh-CN": "登录"},
    "login.resend": {"en": "Send a new code", "zh-CN": "重新获取验证码"},
    "login.code_sent": {
        "en": "If {phone} belongs to an account, a 6-digit code is on its way. "
        "It is valid for 5 minutes.",
        "zh-CN": "如果 {phone} 已注册，6 位验证码已发送，5 分钟内有效。",
    },
    "login.other_phone": {"en": "Use another number", "zh-CN": "换一个号码"},
    "signed_in.title": {"en": "You are signed in", "zh-CN": "您已登录"},
    "signed_in.as": {"en": "Signed in as {name}", "zh-CN": "当前登录：{name}"},
    "logout.title": {"en": "Sign out", "zh-CN": "退出登录"},
    "logout.confirm": {
        "en": "Do you want to sign out of all group applications in this browser?",
        "zh-CN": "确定要在此浏览器中退出所有集团应用吗？",
    },
    "logout.submit": {"en": "Sign out", "zh-CN": "退出"},
    "logout.cancel": {"en": "Stay signed in", "zh-CN": "保持登录"},
    "logout.done_title": {"en": "Signed out", "zh-CN": "已退出"},
    "logout.done": {
        "en": "You are signed out. You may close this window.",
        "zh-CN": "您已退出登录，可以关闭此窗口。",
    },
    "error.title": {"en": "Something went wrong", "zh-CN": "出错了"},
    "error.back": {"en": "Back to sign-in", "zh-CN": "返回登录"},
    "error.not_found": {"en": "This page does not exist.", "zh-CN": "页面不存在。"},
    "error.csrf": {
        "en": "This form has expired or did not come from this site. "
        "Reload the page and try again.",
        "zh-CN": "表单已过期或并非来自本站，请刷新页面后重试。",
    },
    "error.unknown_client": {
        "en": "The application that sent you here is not registered ({detail}).",
        "zh-CN": "将您转到此处的应用未注册（{detail}）。",
    },
    "error.bad_redirect_uri": {
        "en": "The application asked to return to an address it has not registered. "
        "For your safety you were not sent there.",
        "zh-CN": "该应用请求返回一个未登记的地址。为了您的安全，我们没有跳转。",
    },
    "error.invalid_request": {
        "en": "The sign-in request is not valid: {detail}",
        "zh-CN": "登录请求无效：{detail}",
    },
    "error.flow_expired": {
        "en": "This sign-in request has expired or belongs to another browser. "
        "Go back to the application and start again.",
        "zh-CN": "此登录请求已过期或属于其他浏览器，请返回应用重新开始。",
    },
    "error.server": {
        "en": "An unexpected error happened. It was logged; please try again.",
        "zh-CN": "发生了意外错误，已记录，请重试。",
    },
    "error.too_large": {"en": "The request is too large.", "zh-CN": "请求内容过大。"},
    "otp.phone_invalid": {
        "en": "Enter a mainland mobile number (11 digits) or an international number (+...).",
        "zh-CN": "请输入 11 位大陆手机号或国际格式号码（+...）。",
    },
    "otp.code_invalid": {
        "en": "Enter the 6-digit code from the SMS.",
        "zh-CN": "请输入 6 位短信验证码。",
    },
    "otp.wrong": {
        "en": "The code is wrong. {tries_left} tries left.",
        "zh-CN": "验证码错误，还可以尝试 {tries_left} 次。",
    },
    "otp.dead": {
        "en": "The code is wrong, expired or used up. Ask for a new one.",
        "zh-CN": "验证码错误、已过期或已失效，请重新获取。",
    },
    "otp.wait": {
        "en": "Wait {seconds} seconds before asking for another code.",
        "zh-CN": "请等待 {seconds} 秒后再获取验证码。",
    },
    "otp.daily_limit": {
        "en": "Too many codes for this number today. Try again tomorrow.",
        "zh-CN": "该号码今日获取验证码次数过多，请明天再试。",
    },
    "otp.send_failed": {
        "en": "The SMS could not be sent. Try again in a minute.",
        "zh-CN": "短信发送失败，请稍后重试。",
    },
    "login.or": {
        "en": "Or sign in with your company's WeCom",
        "zh-CN": "或使用所在公司的企业微信登录",
    },
    "login.with_wecom": {"en": "WeCom · {corp}", "zh-CN": "企业微信 · {corp}"},
    "select.title": {"en": "Choose an identity", "zh-CN": "选择身份"},
    "select.question": {
        "en": "Which identity do you want to use for {app}?",
        "zh-CN": "您要以哪个身份使用 {app}？",
    },
    "select.cancel": {"en": "Cancel and go back to {app}", "zh-CN": "取消并返回 {app}"},
    "select.forbidden": {
        "en": "That identity is not one of yours, or it is no longer active. Nothing was changed.",
        "zh-CN": "该身份不属于您或已停用，未做任何更改。",
    },
    "link.title": {"en": "Link a company identity", "zh-CN": "绑定公司身份"},
    "link.none": {
        "en": "{app} needs one of your company identities, and none is linked to your account yet.",
        "zh-CN": "{app} 需要您的公司身份，但您的账号尚未绑定任何公司身份。",
    },
    "link.offer": {
        "en": "Link one by signing in with your company's WeCom:",
        "zh-CN": "请使用所在公司的企业微信登录以完成绑定：",
    },
    "upstream.linked_elsewhere": {
        "en": "This WeCom identity is already linked to another account. Ask your administrator.",
        "zh-CN": "该企业微信身份已绑定到其他账号，请联系管理员。",
    },
    "bind.title": {"en": "Link your WeCom identity", "zh-CN": "绑定企业微信身份"},
    "bind.intro": {
        "en": "WeCom says you are {name} ({userid}) at {corp}. This identity is not linked to "
        "an account yet: confirm your mobile number once and we link it.",
        "zh-CN": "企业微信显示您是 {corp} 的 {name}（{userid}）。该身份尚未绑定账号，"
        "请验证一次手机号码以完成绑定。",
    },
    "bind.code_sent": {
        "en": "A 6-digit code was sent to {phone}. It is valid for 5 minutes.",
        "zh-CN": "6 位验证码已发送至 {phone}，5 分钟内有效。",
    },
    "bind.submit": {"en": "Link and sign in", "zh-CN": "绑定并登录"},
    "bind.expired": {
        "en": "This linking step has expired or belongs to another browser. "
        "Sign in with WeCom again.",
        "zh-CN": "绑定已过期或属于其他浏览器，请重新使用企业微信登录。",
    },
    "bind.conflict": {
        "en": "This identity could not be linked just now. Sign in with WeCom again.",
        "zh-CN": "暂时无法绑定该身份，请重新使用企业微信登录。",
    },
    "upstream.unknown": {
        "en": "This company is not connected to group sign-in.",
        "zh-CN": "该公司尚未接入集团统一登录。",
    },
    "upstream.bad_state": {
        "en": "This sign-in answer was already used, has expired, or was started in another "
        "browser. Start the sign-in again.",
        "zh-CN": "该登录结果已被使用、已过期，或来自其他浏览器，请重新登录。",
    },
    "upstream.failed": {
        "en": "Signing in with WeCom failed. Try again.",
        "zh-CN": "企业微信登录失败，请重试。",
    },
    "upstream.unavailable": {
        "en": "WeCom could not be reached. Try again in a minute.",
        "zh-CN": "暂时无法连接企业微信，请稍后重试。",
    },
    "upstream.refused": {
        "en": "WeCom refused the sign-in (error {code}). Try again.",
        "zh-CN": "企业微信拒绝了本次登录（错误码 {code}），请重试。",
    },
    "upstream.callback_rejected": {
        "en": "WeCom's answer could not be used. Start the sign-in again.",
        "zh-CN": "无法使用企业微信的返回结果，请重新登录。",
    },
    "upstream.not_a_member": {
        "en": "You are not a member of this company in WeCom, so you cannot sign in through it.",
        "zh-CN": "您不是该企业的企业微信成员，无法通过它登录。",
    },
    "upstream.disabled": {
        "en": "This identity or its account is disabled. Ask your administrator.",
        "zh-CN": "该身份或其账号已被停用，请联系管理员。",
    },
    "wecom.declined": {
        "en": "The WeCom sign-in was cancelled.",
        "zh-CN": "企业微信登录已取消。",
    },
    "wecom.invalid_code": {
        "en": "The WeCom sign-in has expired or was already used (error {code}). "
        "Start the sign-in again.",
        "zh-CN": "企业微信登录已过期或已被使用（错误码 {code}），请重新登录。",
    },
    "wecom.misconfigured": {
        "en": "This company's WeCom connection is misconfigured (error {code}). "
        "Tell your administrator.",
        "zh-CN": "该企业的企业微信接入配置有误（错误码 {code}），请联系管理员。",
    },
    "wecom.busy": {
        "en": "WeCom is busy (error {code}). Try again in a minute.",
        "zh-CN": "企业微信繁忙（错误码 {code}），请稍后重试。",
    },
    "wecom.ip_not_trusted": {
        "en": "WeCom does not accept calls from this server's address (error {code}). "
        "Tell your administrator.",
        "zh-CN": "企业微信不接受来自本服务器 IP 的调用（错误码 {code}），请联系管理员。",
    },
    "wecom.redirect_untrusted": {
        "en": "This server's address is not a trusted domain of the WeCom app (error {code}). "
        "Tell your administrator.",
        "zh-CN": "本服务器地址不是该企业微信应用的可信域名（错误码 {code}），请联系管理员。",
    },
    "wecom.no_privilege": {
        "en": "The WeCom app may not read your member details (error {code}). "
        "Ask your administrator to add you to the app's visible range.",
        "zh-CN": "企业微信应用无权读取您的成员信息（错误码 {code}），"
        "请联系管理员将您加入应用可见范围。",
    },
    "wecom.unknown_member": {
        "en": "WeCom does not know this member (error {code}).",
        "zh-CN": "企业微信中不存在该成员（错误码 {code}）。",
    },
    "wecom.error": {
        "en": "WeCom answered with an error (error {code}). Try again.",
        "zh-CN": "企业微信返回错误（错误码 {code}），请重试。",
    },
    "wecom.timeout": {
        "en": "WeCom did not answer in time. Try again in a minute.",
        "zh-CN": "企业微信响应超时，请稍后重试。",
    },
    "wecom.unavailable": {
        "en": "WeCom could not be reached. Try again in a minute.",
        "zh-CN": "暂时无法连接企业微信，请稍后重试。",
    },
    "admin.title": {"en": "Identity admin", "zh-CN": "身份管理后台"},
    "admin.nav": {"en": "Admin sections", "zh-CN": "管理分区"},
    "admin.sign_in": {"en": "Admin sign-in", "zh-CN": "管理员登录"},
    "admin.sign_out": {"en": "Sign out", "zh-CN": "退出"},
    "admin.username": {"en": "Username", "zh-CN": "用户名"},
    "admin.password": {"en": "Password", "zh-CN": "密码"},
    "admin.wrong_login": {"en": "Wrong username or password.", "zh-CN": "用户名或密码错误。"},
    "admin.locked": {
        "en": "Too many failed sign-ins. Try again in {minutes} minutes.",
        "zh-CN": "登录失败次数过多，请 {minutes} 分钟后再试。",
    },
    "admin.back": {"en": "Back to the console", "zh-CN": "返回管理后台"},
    "admin.apps": {"en": "Apps", "zh-CN": "应用"},
    "admin.apps_hint": {
        "en": "Register apps, their redirect URIs, context policy and secrets.",
        "zh-CN": "登记应用、回调地址、身份上下文策略与密钥。",
    },
    "admin.corps": {"en": "WeCom corporations", "zh-CN": "企业微信企业"},
    "admin.corps_hint": {
        "en": "Connect subsidiaries' WeCom apps and test the connection.",
        "zh-CN": "接入各子公司的企业微信应用并测试连接。",
    },
    "admin.users": {"en": "Users", "zh-CN": "用户"},
    "admin.users_hint": {
        "en": "Find people, their linked identities and sessions.",
        "zh-CN": "查找人员及其绑定身份与会话。",
    },
    "admin.audit": {"en": "Audit trail", "zh-CN": "审计日志"},
    "admin.audit_hint": {
        "en": "Every sign-in, binding, token and change.",
        "zh-CN": "所有登录、绑定、令牌与变更记录。",
    },
    "admin.keys": {"en": "Signing keys", "zh-CN": "签名密钥"},
    "admin.keys_hint": {
        "en": "List and rotate token signing keys.",
        "zh-CN": "查看并轮换令牌签名密钥。",
    },
    "admin.api_hint": {
        "en": "Scripts use the admin API, described at",
        "zh-CN": "脚本可调用管理 API，说明文档见",
    },
    "outbox.title": {"en": "SMS outbox (dev mode)", "zh-CN": "短信发件箱（开发模式）"},
    "outbox.empty": {"en": "No SMS sent yet.", "zh-CN": "暂无短信。"},
    "home.title": {"en": "Group sign-in", "zh-CN": "集团统一登录"},
    "home.signed_out": {"en": "You are not signed in.", "zh-CN": "您尚未登录。"},
}


def negotiate(query_lang: str | None, cookie_lang: str | None, accept_language: str) -> str:
    """`?lang=` first, then the remembered choice, then Accept-Language; English otherwise."""
    for choice in (query_lang, cookie_lang):
        if choice in LANGUAGES:
            return choice
    ranked = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:  # q=0 means "not acceptable" (RFC 9110 12.5.4)
            ranked.append((-quality, index, tag.strip().lower()))
    for _quality, _index, tag in sorted(ranked):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


def translator(lang: str) -> Callable[..., str]:
    """`t("key", name=...)` in `lang`, falling back to English, then to the key itself."""

    def translate(key: str, **params: Any) -> str:
        entry: Mapping[str, str] = MESSAGES.get(key, {})
        text = entry.get(lang) or entry.get(DEFAULT_LANGUAGE) or key
        return text.format(**params) if params else text

    return translate
