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
    "error.bad_input": {
        "en": "The request contains characters that are not allowed.",
        "zh-CN": "请求中含有不允许的字符。",
    },
    "error.too_many": {
        "en": "Too many sign-in requests from this browser or network. "
        "Try again in {seconds} seconds.",
        "zh-CN": "来自此浏览器或网络的登录请求过多，请 {seconds} 秒后再试。",
    },
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
    "admin.corp.list": {"en": "Connected corporations", "zh-CN": "已接入的企业"},
    "admin.corp.none": {
        "en": "No corporation is connected yet.",
        "zh-CN": "尚未接入任何企业。",
    },
    "admin.corp.corp_id": {"en": "Corp ID", "zh-CN": "企业 ID"},
    "admin.corp.corp_id_hint": {
        "en": "As WeCom's admin console shows it (My Company → Company Information): letters, "
        "digits, _ and -.",
        "zh-CN": "即企业微信管理后台「我的企业 → 企业信息」中的企业 ID：字母、数字、_ 与 -。",
    },
    "admin.corp.name": {"en": "Name", "zh-CN": "名称"},
    "admin.corp.name_hint": {
        "en": "Shown to people when they sign in and pick an identity.",
        "zh-CN": "登录与选择身份时向用户展示。",
    },
    "admin.corp.agent_id": {"en": "Agent ID", "zh-CN": "应用 AgentId"},
    "admin.corp.agent_id_hint": {
        "en": "The AgentId of the corporation's self-built app used for sign-in.",
        "zh-CN": "用于登录的企业自建应用的 AgentId。",
    },
    "admin.corp.secret": {"en": "App secret", "zh-CN": "应用 Secret"},
    "admin.corp.secret_hint": {
        "en": "The self-built app's Secret. It is stored encrypted and never shown again.",
        "zh-CN": "企业自建应用的 Secret。加密保存，不会再次显示。",
    },
    "admin.corp.new_secret": {"en": "New app secret", "zh-CN": "新的应用 Secret"},
    "admin.corp.new_secret_hint": {
        "en": "A secret is set. Leave this empty to keep it; type a new one to replace it.",
        "zh-CN": "已设置 Secret。留空则保持不变；填写新的 Secret 将替换原有 Secret。",
    },
    "admin.corp.secret_set": {"en": "Set (never shown)", "zh-CN": "已设置（不显示）"},
    "admin.corp.trust_mobile": {"en": "Trusted mobile", "zh-CN": "信任手机号"},
    "admin.corp.trust_mobile_label": {
        "en": "Trust mobile numbers from this corporation's directory",
        "zh-CN": "信任该企业通讯录中的手机号",
    },
    "admin.corp.trust_mobile_hint": {
        "en": "A mobile number read from WeCom then binds a member without an SMS code, to a "
        "new person or to the person with that number who has no active identity in another "
        "corporation. Anyone who has one still proves the number by SMS code: this "
        "corporation's admins can set any mobile, and must not take over other subsidiaries' "
        "people.",
        "zh-CN": "勾选后，从企业微信读取的手机号可直接绑定成员，无需短信验证码：用于新建的人员，"
        "或该手机号对应、且在其他企业没有有效身份的人员。已在其他企业有有效身份的人员仍须通过短信"
        "验证码证明手机号：本企业管理员可随意填写成员手机号，不能借此冒用其他子公司的人员。",
    },
    "admin.corp.enabled": {"en": "Enabled", "zh-CN": "已启用"},
    "admin.corp.enabled_label": {
        "en": "Enabled: people may sign in through this corporation",
        "zh-CN": "启用：允许用户通过该企业登录",
    },
    "admin.corp.status": {"en": "Status", "zh-CN": "状态"},
    "admin.corp.disabled": {"en": "Disabled", "zh-CN": "已停用"},
    "admin.corp.created": {"en": "Connected", "zh-CN": "接入时间"},
    "admin.corp.yes": {"en": "Yes", "zh-CN": "是"},
    "admin.corp.no": {"en": "No", "zh-CN": "否"},
    "admin.corp.add": {"en": "Connect a corporation", "zh-CN": "接入企业"},
    "admin.corp.add_submit": {"en": "Connect", "zh-CN": "接入"},
    "admin.corp.edit": {"en": "Edit", "zh-CN": "编辑"},
    "admin.corp.save": {"en": "Save", "zh-CN": "保存"},
    "admin.corp.back": {"en": "All corporations", "zh-CN": "全部企业"},
    "admin.corp.fix": {
        "en": "Nothing was saved. Correct the field marked below.",
        "zh-CN": "未保存任何更改，请修改下方标出的字段。",
    },
    "admin.corp.invalid.corp_id": {
        "en": "Not a WeCom corp ID: 1 to 64 letters, digits, _ or -.",
        "zh-CN": "企业 ID 无效：应为 1 到 64 个字母、数字、_ 或 -。",
    },
    "admin.corp.invalid.name": {
        "en": "Give a name of 1 to 200 characters.",
        "zh-CN": "请填写 1 到 200 个字符的名称。",
    },
    "admin.corp.invalid.agent_id": {
        "en": "The agent ID is the app's positive number.",
        "zh-CN": "AgentId 应为应用的正整数编号。",
    },
    "admin.corp.invalid.secret": {
        "en": "Paste the app secret exactly as WeCom shows it (visible characters, no spaces, "
        "at most 256).",
        "zh-CN": "请按企业微信显示的原样粘贴应用 Secret（可见字符、无空格、最多 256 个）。",
    },
    "admin.corp.invalid.trust_mobile": {
        "en": "Tick the box or leave it empty.",
        "zh-CN": "请勾选或留空。",
    },
    "admin.corp.invalid.enabled": {
        "en": "Tick the box or leave it empty.",
        "zh-CN": "请勾选或留空。",
    },
    "admin.corp.taken": {
        "en": "This corporation is already connected.",
        "zh-CN": "该企业已接入。",
    },
    "admin.corp.not_found": {
        "en": "There is no such corporation.",
        "zh-CN": "不存在该企业。",
    },
    "admin.corp.added": {
        "en": "The corporation is connected. Test the connection to check the secret.",
        "zh-CN": "企业已接入。请测试连接以确认 Secret 正确。",
    },
    "admin.corp.saved": {"en": "Saved.", "zh-CN": "已保存。"},
    "admin.corp.enabled_now": {
        "en": "Enabled: people may sign in through this corporation again.",
        "zh-CN": "已启用：用户可再次通过该企业登录。",
    },
    "admin.corp.disabled_now": {
        "en": "Disabled: nobody can sign in through this corporation. Its links and users stay.",
        "zh-CN": "已停用：任何人都无法通过该企业登录。其身份绑定与用户保持不变。",
    },
    "admin.corp.enable": {"en": "Enable", "zh-CN": "启用"},
    "admin.corp.disable": {"en": "Disable", "zh-CN": "停用"},
    "admin.corp.disable_hint": {
        "en": "Disabling stops sign-ins through this corporation at once.",
        "zh-CN": "停用后，将立即停止通过该企业登录。",
    },
    "admin.corp.test": {"en": "Test connection", "zh-CN": "测试连接"},
    "admin.corp.test_hint": {
        "en": "Asks WeCom for an access token now, with the stored corp ID and secret.",
        "zh-CN": "立即使用已保存的企业 ID 与 Secret 向企业微信申请 access token。",
    },
    "admin.corp.test.ok": {
        "en": "WeCom answered errcode 0 (ok): the corp ID and secret work. The token is valid "
        "for {expires_in} s.",
        "zh-CN": "企业微信返回 errcode 0（ok）：企业 ID 与 Secret 可用，"
        "token 有效期 {expires_in} 秒。",
    },
    "admin.corp.test.refused": {
        "en": "WeCom refused: errcode {errcode}, errmsg “{errmsg}”.",
        "zh-CN": "企业微信拒绝：errcode {errcode}，errmsg “{errmsg}”。",
    },
    "admin.corp.test.timeout": {
        "en": "WeCom did not answer in time.",
        "zh-CN": "企业微信未在规定时间内响应。",
    },
    "admin.corp.test.unavailable": {
        "en": "WeCom could not be asked: no answer that is WeCom's.",
        "zh-CN": "无法询问企业微信：未收到企业微信的有效响应。",
    },
    "admin.corp.test.reason": {"en": "Our reading", "zh-CN": "判断"},
    "admin.corp.test.detail": {"en": "Details", "zh-CN": "详情"},
    "admin.corp.secret_unreadable": {
        "en": "The stored secret does not decrypt with this server's IAM_SECRET_KEY. "
        "Type the secret again.",
        "zh-CN": "已保存的 Secret 无法用本服务器的 IAM_SECRET_KEY 解密，请重新填写 Secret。",
    },
    "admin.corp.hint.wecom.misconfigured": {
        "en": "Check the corp ID and the app secret (40013: the corp ID; 40001, 40091: the "
        "secret).",
        "zh-CN": "请检查企业 ID 与应用 Secret（40013：企业 ID 错误；40001、40091：Secret 错误）。",
    },
    "admin.corp.hint.wecom.busy": {
        "en": "WeCom is throttling calls. Wait a few minutes before testing again.",
        "zh-CN": "企业微信正在限制调用频率，请等待几分钟后再测试。",
    },
    "admin.corp.hint.wecom.ip_not_trusted": {
        "en": "Add this server's outgoing IP address to the app's trusted IPs in WeCom.",
        "zh-CN": "请在企业微信中将本服务器的出口 IP 加入该应用的企业可信 IP。",
    },
    "admin.corp.hint.wecom.timeout": {
        "en": "Check this server's network route to WeCom, then test again.",
        "zh-CN": "请检查本服务器到企业微信的网络，然后重新测试。",
    },
    "admin.corp.hint.wecom.unavailable": {
        "en": "Check IAM_WECOM_API_BASE, DNS and any proxy between this server and WeCom.",
        "zh-CN": "请检查 IAM_WECOM_API_BASE、DNS 以及本服务器与企业微信之间的代理。",
    },
    "admin.corp.hint.admin.corp.secret_unreadable": {
        "en": "Type the app secret again below and save.",
        "zh-CN": "请在下方重新填写应用 Secret 并保存。",
    },
    "admin.corp.hint.other": {
        "en": "Look the errcode up in WeCom's global error codes.",
        "zh-CN": "请在企业微信全局错误码中查询该 errcode。",
    },
    "admin.key.kid": {"en": "Key ID (kid)", "zh-CN": "密钥 ID（kid）"},
    "admin.key.alg": {"en": "Algorithm", "zh-CN": "算法"},
    "admin.key.created": {"en": "Created", "zh-CN": "创建时间"},
    "admin.key.retired": {"en": "Retired", "zh-CN": "停用时间"},
    "admin.key.publish_until": {"en": "Published until", "zh-CN": "公布截止"},
    "admin.key.role": {"en": "Role", "zh-CN": "用途"},
    "admin.key.signs": {"en": "Signs new tokens", "zh-CN": "签发新令牌"},
    "admin.key.verifies": {
        "en": "Published (verifies older tokens)",
        "zh-CN": "已公布（用于验证旧令牌）",
    },
    "admin.key.expired": {"en": "No longer published", "zh-CN": "已不再公布"},
    "admin.key.while_active": {"en": "While it signs", "zh-CN": "签发期间"},
    "admin.key.none": {"en": "No signing key yet.", "zh-CN": "暂无签名密钥。"},
    "admin.key.rotate": {"en": "Rotate the signing key", "zh-CN": "轮换签名密钥"},
    "admin.key.rotate_hint": {
        "en": "A new key signs every token from now on. The current one stays in /jwks.json "
        "until the tokens it signed have expired, so nobody is signed out.",
        "zh-CN": "此后所有令牌都将由新密钥签发。当前密钥会保留在 /jwks.json 中，直到由它签发的令牌"
        "全部过期，因此不会有人被迫退出登录。",
    },
    "admin.key.confirm": {
        "en": "Yes, rotate the signing key now",
        "zh-CN": "确认立即轮换签名密钥",
    },
    "admin.key.confirm_needed": {
        "en": "Nothing was rotated: tick the box to confirm.",
        "zh-CN": "未执行轮换：请勾选确认框。",
    },
    "admin.key.rotated": {
        "en": "Rotated: the new key below signs from now on.",
        "zh-CN": "已轮换：此后由下方的新密钥签发令牌。",
    },
    "admin.app.none": {"en": "No apps are registered yet.", "zh-CN": "尚未登记任何应用。"},
    "admin.app.back": {"en": "← All apps", "zh-CN": "← 全部应用"},
    "admin.app.name": {"en": "Name", "zh-CN": "名称"},
    "admin.app.client_id": {"en": "Client ID", "zh-CN": "Client ID"},
    "admin.app.kind": {"en": "Type", "zh-CN": "类型"},
    "admin.app.public": {"en": "Public", "zh-CN": "公开客户端"},
    "admin.app.confidential": {"en": "Confidential", "zh-CN": "机密客户端"},
    "admin.app.admin_client": {"en": "admin API", "zh-CN": "管理 API"},
    "admin.app.create_title": {"en": "Register an app", "zh-CN": "登记新应用"},
    "admin.app.create": {"en": "Register", "zh-CN": "登记"},
    "admin.app.created": {"en": "The app is registered.", "zh-CN": "应用已登记。"},
    "admin.app.settings": {"en": "Settings", "zh-CN": "设置"},
    "admin.app.save": {"en": "Save changes", "zh-CN": "保存修改"},
    "admin.app.saved": {"en": "Changes saved.", "zh-CN": "修改已保存。"},
    "admin.app.redirect_uris": {"en": "Redirect URIs", "zh-CN": "回调地址（Redirect URI）"},
    "admin.app.redirect_uris_hint": {
        "en": "One per line, matched exactly. https, or http on 127.0.0.1, localhost or [::1]; "
        "no # and no *.",
        "zh-CN": "每行一个，精确匹配。须为 https，仅 127.0.0.1、localhost 或 [::1] 可用 http；"
        "不得含 # 或 *。",
    },
    "admin.app.post_logout_redirect_uris": {
        "en": "Post-logout redirect URIs",
        "zh-CN": "退出后跳转地址",
    },
    "admin.app.post_logout_redirect_uris_hint": {
        "en": "Optional; one per line, same rules.",
        "zh-CN": "可选；每行一个，规则同上。",
    },
    "admin.app.public_label": {
        "en": "Public client (a mobile or single-page app that cannot keep a secret)",
        "zh-CN": "公开客户端（无法保管密钥的移动端或单页应用）",
    },
    "admin.app.public_hint": {
        "en": "A public app gets no secret and must use PKCE. This cannot be changed later: "
        "to switch, register a new app.",
        "zh-CN": "公开客户端没有密钥，必须使用 PKCE。登记后不可更改；如需切换，请登记新应用。",
    },
    "admin.app.kind_fixed": {
        "en": "Public or confidential was fixed at registration; to switch, register a new app.",
        "zh-CN": "公开/机密类型在登记时确定，不可更改；如需切换，请登记新应用。",
    },
    "admin.app.admin_scope_kept": {
        "en": "This app may call the admin API: it keeps the iam:admin scope.",
        "zh-CN": "此应用可调用管理 API，始终保留 iam:admin 权限范围。",
    },
    "admin.app.scopes": {"en": "Allowed scopes", "zh-CN": "允许的权限范围（scope）"},
    "admin.app.context_policy": {"en": "Identity context", "zh-CN": "身份上下文策略"},
    "admin.app.policy.none": {
        "en": "none: the person only, never a subsidiary identity",
        "zh-CN": "none：仅自然人身份，不含任何子公司身份",
    },
    "admin.app.policy.optional": {
        "en": "optional: the subsidiary identity when the session has one",
        "zh-CN": "optional：会话中有子公司身份时附带",
    },
    "admin.app.policy.required": {
        "en": "required: always a subsidiary identity (the user may be asked to choose)",
        "zh-CN": "required：始终附带子公司身份（必要时请用户选择）",
    },
    "admin.app.context_claim": {"en": "Context claim name", "zh-CN": "上下文声明名称"},
    "admin.app.context_claim_hint": {
        "en": "Empty means {default}. Letters, digits and _ : / . - #, e.g. a namespaced URI.",
        "zh-CN": "留空即为 {default}。可用字母、数字及 _ : / . - #，例如带命名空间的 URI。",
    },
    "admin.app.access_token_ttl": {
        "en": "Access token lifetime (seconds)",
        "zh-CN": "访问令牌有效期（秒）",
    },
    "admin.app.access_token_ttl_hint": {
        "en": "{least} to {most}.",
        "zh-CN": "{least} 至 {most}。",
    },
    "admin.app.id_token_ttl": {"en": "ID token lifetime (seconds)", "zh-CN": "ID 令牌有效期（秒）"},
    "admin.app.id_token_ttl_hint": {"en": "{least} to {most}.", "zh-CN": "{least} 至 {most}。"},
    "admin.app.refresh_token_ttl": {
        "en": "Refresh token lifetime (seconds)",
        "zh-CN": "刷新令牌有效期（秒）",
    },
    "admin.app.refresh_token_ttl_hint": {
        "en": "{least} to {most} (90 days); 0 means the app gets no refresh tokens.",
        "zh-CN": "{least} 至 {most}（90 天）；0 表示不签发刷新令牌。",
    },
    "admin.app.invalid": {
        "en": "Nothing was saved: check the field marked below.",
        "zh-CN": "未保存任何内容：请检查下方标出的字段。",
    },
    "admin.app.invalid.name": {
        "en": "Enter a name of 1 to 200 characters, without control characters.",
        "zh-CN": "请填写 1 至 200 个字符的名称，不含控制字符。",
    },
    "admin.app.invalid.redirect_uris": {
        "en": "Give at least one redirect URI; each must be an absolute https URL (http only on "
        "a loopback address), without # or *.",
        "zh-CN": "至少填写一个回调地址；每个都须为完整的 https 地址（仅回环地址可用 http），"
        "不得含 # 或 *。",
    },
    "admin.app.invalid.post_logout_redirect_uris": {
        "en": "Each address must be an absolute https URL (http only on a loopback address), "
        "without # or *.",
        "zh-CN": "每个地址都须为完整的 https 地址（仅回环地址可用 http），不得含 # 或 *。",
    },
    "admin.app.invalid.scopes": {
        "en": "Choose among the listed scopes.",
        "zh-CN": "请从列出的权限范围中选择。",
    },
    "admin.app.invalid.context_policy": {
        "en": "Choose none, optional or required.",
        "zh-CN": "请选择 none、optional 或 required。",
    },
    "admin.app.invalid.context_claim": {
        "en": "Use up to 255 letters, digits and _ : / . - #, and not a standard claim such as "
        "sub or email.",
        "zh-CN": "最多 255 个字母、数字及 _ : / . - #，且不能是 sub、email 等标准声明名。",
    },
    "admin.app.invalid.lifetime": {
        "en": "Enter a whole number of seconds from {least} to {most}.",
        "zh-CN": "请输入 {least} 至 {most} 之间的整数秒数。",
    },
    "admin.app.secret_title": {"en": "Client secret", "zh-CN": "客户端密钥"},
    "admin.app.secret_warning": {
        "en": "Copy this secret now and keep it safe: it is shown only this once and cannot be "
        "recovered. Lost it? Rotate the secret.",
        "zh-CN": "请立即复制并妥善保管此密钥：它只显示这一次，之后无法找回。如果遗失，请轮换密钥。",
    },
    "admin.app.secrets": {"en": "Secret", "zh-CN": "密钥"},
    "admin.app.no_secret": {
        "en": "A public app has no secret: it proves itself with PKCE.",
        "zh-CN": "公开客户端没有密钥，以 PKCE 证明身份。",
    },
    "admin.app.never_rotated": {
        "en": "The secret has not been rotated since registration.",
        "zh-CN": "自登记以来尚未轮换密钥。",
    },
    "admin.app.rotated_at": {"en": "Last rotated {when}.", "zh-CN": "上次轮换：{when}。"},
    "admin.app.has_previous": {
        "en": "Two secrets work now: the current one and the previous one. Retire the previous "
        "one once the app uses the new secret.",
        "zh-CN": "目前有两个密钥有效：当前密钥和上一个密钥。应用换用新密钥后，请停用上一个密钥。",
    },
    "admin.app.rotate": {"en": "Rotate secret", "zh-CN": "轮换密钥"},
    "admin.app.rotate_hint": {
        "en": "A new secret is shown once; the current one keeps working until you retire it, "
        "so the app can switch without downtime. Rotating again retires the older one.",
        "zh-CN": "新密钥只显示一次；当前密钥在停用前仍然有效，应用可无中断地切换。"
        "再次轮换会使更早的密钥失效。",
    },
    "admin.app.rotated": {
        "en": "New secret created. The previous secret keeps working until you retire it.",
        "zh-CN": "已生成新密钥。上一个密钥在停用前仍然有效。",
    },
    "admin.app.retire": {"en": "Retire previous secret", "zh-CN": "停用上一个密钥"},
    "admin.app.retired": {
        "en": "The previous secret no longer works.",
        "zh-CN": "上一个密钥已失效。",
    },
    "admin.app.delete": {"en": "Delete", "zh-CN": "删除"},
    "admin.app.delete_start": {"en": "Delete this app…", "zh-CN": "删除此应用…"},
    "admin.app.delete_title": {"en": "Delete {name}?", "zh-CN": "删除 {name}？"},
    "admin.app.delete_warning": {
        "en": "Its users can no longer sign in to it and its tokens stop working. This cannot "
        "be undone.",
        "zh-CN": "删除后用户将无法登录此应用，其令牌全部失效。此操作无法撤销。",
    },
    "admin.app.delete_confirm": {"en": "Delete permanently", "zh-CN": "永久删除"},
    "admin.app.cancel": {"en": "Cancel", "zh-CN": "取消"},
    "admin.app.deleted": {"en": "The app is deleted.", "zh-CN": "应用已删除。"},
    "admin.app.not_found": {"en": "There is no such app.", "zh-CN": "没有这个应用。"},
    "admin.user_search": {"en": "Search", "zh-CN": "搜索"},
    "admin.user_search_hint": {
        "en": "Name, phone number, email or WeCom userid; matched literally, in any letter case.",
        "zh-CN": "姓名、手机号、邮箱或企业微信账号；按字面匹配，不区分大小写。",
    },
    "admin.user_search_submit": {"en": "Search", "zh-CN": "搜索"},
    "admin.user_query_too_long": {
        "en": "Search for at most 200 characters.",
        "zh-CN": "搜索内容最多 200 个字符。",
    },
    "admin.user_none": {"en": "No user matches.", "zh-CN": "没有匹配的用户。"},
    "admin.user_pages": {"en": "Result pages", "zh-CN": "结果分页"},
    "admin.user_previous": {"en": "Previous page", "zh-CN": "上一页"},
    "admin.user_next": {"en": "Next page", "zh-CN": "下一页"},
    "admin.user_name": {"en": "Name", "zh-CN": "姓名"},
    "admin.user_phone": {"en": "Phone", "zh-CN": "手机号"},
    "admin.user_email": {"en": "Email", "zh-CN": "邮箱"},
    "admin.user_status": {"en": "Status", "zh-CN": "状态"},
    "admin.user_status_active": {"en": "Active", "zh-CN": "正常"},
    "admin.user_status_disabled": {"en": "Disabled", "zh-CN": "已停用"},
    "admin.user_link_count": {"en": "Linked identities", "zh-CN": "绑定身份数"},
    "admin.user_back": {"en": "All users", "zh-CN": "全部用户"},
    "admin.user_not_found": {"en": "There is no such user.", "zh-CN": "没有该用户。"},
    "admin.user_bad_status": {
        "en": "The status must be active or disabled.",
        "zh-CN": "状态只能是正常或已停用。",
    },
    "admin.user_id": {"en": "User id (sub)", "zh-CN": "用户 ID（sub）"},
    "admin.user_created": {"en": "Created", "zh-CN": "创建时间"},
    "admin.user_disable": {"en": "Disable", "zh-CN": "停用"},
    "admin.user_disable_hint": {
        "en": "Disabling signs the person out everywhere and revokes their tokens; "
        "they can no longer sign in.",
        "zh-CN": "停用后，该用户在所有地方退出登录、令牌全部作废，且无法再登录。",
    },
    "admin.user_enable": {"en": "Enable", "zh-CN": "启用"},
    "admin.user_end_sessions": {"en": "End all sessions", "zh-CN": "结束全部会话"},
    "admin.user_audit": {"en": "Audit trail of this user", "zh-CN": "该用户的审计日志"},
    "admin.user_done_disabled": {
        "en": "The user is disabled: signed out everywhere, tokens revoked.",
        "zh-CN": "已停用该用户：已在所有地方退出登录，令牌已作废。",
    },
    "admin.user_done_enabled": {"en": "The user is enabled again.", "zh-CN": "已重新启用该用户。"},
    "admin.user_done_ended": {
        "en": "Sessions ended: {n}. Their tokens are revoked.",
        "zh-CN": "已结束 {n} 个会话，相关令牌已作废。",
    },
    "admin.user_done_link_removed": {"en": "The link is removed.", "zh-CN": "已解除该绑定。"},
    "admin.user_links": {"en": "Linked identities", "zh-CN": "绑定的身份"},
    "admin.user_no_links": {"en": "No identity is linked.", "zh-CN": "尚未绑定任何身份。"},
    "admin.user_link_corp": {"en": "Corporation", "zh-CN": "企业"},
    "admin.user_link_userid": {"en": "Identity (corp/userid)", "zh-CN": "身份（企业/账号）"},
    "admin.user_link_departments": {"en": "Departments", "zh-CN": "部门"},
    "admin.user_link_position": {"en": "Position", "zh-CN": "职务"},
    "admin.user_link_last_login": {"en": "Last sign-in", "zh-CN": "最近登录"},
    "admin.user_actions": {"en": "Actions", "zh-CN": "操作"},
    "admin.user_link_remove": {"en": "Remove link", "zh-CN": "解除绑定"},
    "admin.user_link_remove_confirm": {
        "en": "Remove the link {subject} from {name}? They can no longer sign in with it, and "
        "sessions that use it as their identity lose it.",
        "zh-CN": "确定解除 {name} 与 {subject} 的绑定吗？解除后无法再用该身份登录，"
        "以该身份登录的会话将不再带有该身份。",
    },
    "admin.user_link_remove_yes": {"en": "Remove", "zh-CN": "解除"},
    "admin.user_link_gone": {
        "en": "That link no longer exists.",
        "zh-CN": "该绑定已不存在。",
    },
    "admin.user_cancel": {"en": "Cancel", "zh-CN": "取消"},
    "admin.user_sessions": {"en": "Live sessions", "zh-CN": "当前会话"},
    "admin.user_no_sessions": {"en": "No live session.", "zh-CN": "没有当前会话。"},
    "admin.user_session_started": {"en": "Started", "zh-CN": "开始时间"},
    "admin.user_session_last_seen": {"en": "Last seen", "zh-CN": "最近活动"},
    "admin.user_session_ip": {"en": "IP address", "zh-CN": "IP 地址"},
    "admin.user_session_method": {"en": "Signed in with", "zh-CN": "登录方式"},
    "admin.user_session_context": {"en": "Identity context", "zh-CN": "身份上下文"},
    "admin.user_session_no_context": {"en": "None", "zh-CN": "无"},
    "admin.audit_filters": {"en": "Filters", "zh-CN": "筛选"},
    "admin.audit_user": {"en": "User id", "zh-CN": "用户 ID"},
    "admin.audit_app": {"en": "App (client_id)", "zh-CN": "应用（client_id）"},
    "admin.audit_event": {"en": "Event", "zh-CN": "事件"},
    "admin.audit_event_hint": {
        "en": "An event name (login.succeeded), or its first part with the dot (login.).",
        "zh-CN": "事件名（如 login.succeeded），或带点的前缀（如 login.）。",
    },
    "admin.audit_from": {"en": "From (UTC)", "zh-CN": "起始（UTC）"},
    "admin.audit_to": {"en": "Until (UTC)", "zh-CN": "截止（UTC）"},
    "admin.audit_filter": {"en": "Filter", "zh-CN": "筛选"},
    "admin.audit_clear": {"en": "Clear", "zh-CN": "清除"},
    "admin.audit_bad_filter": {
        "en": "A filter is not valid: times are dates and times in UTC.",
        "zh-CN": "筛选条件无效：时间须为 UTC 日期和时间。",
    },
    "admin.audit_none": {"en": "No event matches.", "zh-CN": "没有匹配的事件。"},
    "admin.audit_time": {"en": "Time (UTC)", "zh-CN": "时间（UTC）"},
    "admin.audit_outcome": {"en": "Outcome", "zh-CN": "结果"},
    "admin.audit_actor": {"en": "Actor", "zh-CN": "操作者"},
    "admin.audit_ip": {"en": "IP address", "zh-CN": "IP 地址"},
    "admin.audit_detail": {"en": "Detail", "zh-CN": "详情"},
    "admin.audit_pages": {"en": "Pages of the trail", "zh-CN": "日志分页"},
    "admin.audit_newest": {"en": "Newest", "zh-CN": "最新"},
    "admin.audit_older": {"en": "Older", "zh-CN": "更早"},
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
