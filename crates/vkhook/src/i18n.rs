//! Every UI string, in Russian (the default) and English. `Msg` is a struct, so a string missing in one language
//! is a compile error. Strings with `{…}` are filled with [`fill`].

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ru,
    En,
}

impl Lang {
    pub fn msg(self) -> &'static Msg {
        match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim() {
            "ru" => Some(Lang::Ru),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first language of `Accept-Language` that we speak; Russian otherwise.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("ru") => Lang::Ru,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::Ru => Lang::En,
            Lang::En => Lang::Ru,
        }
    }
}

/// Replaces `{name}` in `template` with the given values.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

pub struct Msg {
    pub lang_code: &'static str,
    pub switch_to: &'static str,
    pub app_name: &'static str,
    pub tagline: &'static str,
    pub landing_points: [&'static str; 3],
    pub sign_in_vk: &'static str,
    pub sign_out: &'static str,
    pub my_communities: &'static str,
    pub communities_title: &'static str,
    pub communities_empty: &'static str,
    pub open: &'static str,
    pub role_administrator: &'static str,
    pub role_editor: &'static str,
    pub role_moderator: &'static str,
    pub status_not_connected: &'static str,
    pub status_connecting: &'static str,
    pub status_connected: &'static str,
    pub status_failed: &'static str,
    pub status_needs_reauth: &'static str,
    pub no_groups_scope: &'static str,
    pub groups_hidden: &'static str,
    pub vk_unavailable: &'static str,
    pub add_community_title: &'static str,
    pub add_community_hint: &'static str,
    pub add_community_button: &'static str,
    pub add_community_not_found: &'static str,
    pub add_community_not_managed: &'static str,
    pub add_community_bad_input: &'static str,
    pub back_to_communities: &'static str,
    pub community_role: &'static str,
    pub status_card_title: &'static str,
    pub connect_button: &'static str,
    pub error_title: &'static str,
    pub error_back_home: &'static str,
    pub error_not_found: &'static str,
    pub error_forbidden: &'static str,
    pub error_csrf: &'static str,
    pub error_internal: &'static str,
    pub error_unavailable: &'static str,
    pub error_bad_request: &'static str,
    pub signin_denied: &'static str,
    pub signin_state: &'static str,
    pub signin_failed: &'static str,
    pub signin_again: &'static str,
    pub signed_out: &'static str,
    pub try_again: &'static str,
}

pub static RU: Msg = Msg {
    lang_code: "ru",
    switch_to: "English",
    app_name: "vkhook",
    tagline: "Подключите сообщество ВКонтакте к боту в один клик.",
    landing_points: [
        "Войдите через VK ID и выберите сообщество, которым управляете.",
        "Нажмите «Подключить Callback API» — vkhook всё настроит сам за несколько секунд.",
        "Бот отвечает на комментарии и сообщения по вашим правилам, а вы видите каждое событие.",
    ],
    sign_in_vk: "Войти через VK ID",
    sign_out: "Выйти",
    my_communities: "Мои сообщества",
    communities_title: "Ваши сообщества",
    communities_empty: "Пока нет ни одного сообщества, которым вы управляете.",
    open: "Открыть",
    role_administrator: "Администратор",
    role_editor: "Редактор",
    role_moderator: "Модератор",
    status_not_connected: "Не подключено",
    status_connecting: "Подключается…",
    status_connected: "Подключено",
    status_failed: "Ошибка подключения",
    status_needs_reauth: "Нужно переподключить",
    no_groups_scope: "ВКонтакте не дал приложению доступ к списку ваших сообществ. Ничего страшного: добавьте сообщество по ссылке или номеру.",
    groups_hidden: "Список ваших сообществ скрыт настройками приватности ВКонтакте. Добавьте сообщество по ссылке или номеру.",
    vk_unavailable: "ВКонтакте сейчас не отвечает, показываем сохранённый список. Обновите страницу чуть позже.",
    add_community_title: "Добавить сообщество",
    add_community_hint: "Ссылка или номер, например vk.com/club1001, vk.com/zerno_coffee или 1001",
    add_community_button: "Добавить",
    add_community_not_found: "Такого сообщества ВКонтакте не нашлось. Проверьте ссылку.",
    add_community_not_managed: "Вы не управляете этим сообществом: добавить можно только сообщество, где вы администратор, редактор или модератор.",
    add_community_bad_input: "Не понимаю эту ссылку. Вставьте адрес сообщества или его номер.",
    back_to_communities: "← Все сообщества",
    community_role: "Ваша роль",
    status_card_title: "Callback API",
    connect_button: "🔗 Подключить Callback API",
    error_title: "Что-то пошло не так",
    error_back_home: "На главную",
    error_not_found: "Такой страницы нет, или у вас нет к ней доступа.",
    error_forbidden: "Это действие вам недоступно.",
    error_csrf: "Форма устарела или пришла не из vkhook. Вернитесь назад, обновите страницу и попробуйте ещё раз.",
    error_internal: "Внутренняя ошибка. Мы уже записали её; попробуйте ещё раз чуть позже.",
    error_unavailable: "Сервис временно недоступен. Попробуйте через минуту.",
    error_bad_request: "Запрос не удалось понять.",
    signin_denied: "Вы отменили вход через VK ID. Чтобы пользоваться vkhook, разрешите доступ.",
    signin_state: "Ссылка для входа устарела или уже использована. Начните вход заново.",
    signin_failed: "VK ID не подтвердил вход. Попробуйте войти ещё раз.",
    signin_again: "Сеанс ВКонтакте истёк. Войдите снова, чтобы продолжить.",
    signed_out: "Вы вышли из vkhook.",
    try_again: "Попробовать снова",
};

pub static EN: Msg = Msg {
    lang_code: "en",
    switch_to: "Русский",
    app_name: "vkhook",
    tagline: "Connect a VK community to a bot in one click.",
    landing_points: [
        "Sign in with VK ID and pick a community you manage.",
        "Press “Connect Callback API” — vkhook sets everything up in a few seconds.",
        "The bot answers comments and messages by your rules, and you see every event.",
    ],
    sign_in_vk: "Sign in with VK ID",
    sign_out: "Sign out",
    my_communities: "My communities",
    communities_title: "Your communities",
    communities_empty: "There are no communities you manage yet.",
    open: "Open",
    role_administrator: "Administrator",
    role_editor: "Editor",
    role_moderator: "Moderator",
    status_not_connected: "Not connected",
    status_connecting: "Connecting…",
    status_connected: "Connected",
    status_failed: "Connection failed",
    status_needs_reauth: "Needs reconnecting",
    no_groups_scope: "VK did not give the app access to your list of communities. No problem: add a community by link or id.",
    groups_hidden: "Your list of communities is hidden by your VK privacy settings. Add a community by link or id.",
    vk_unavailable: "VK is not answering right now; showing the saved list. Reload the page a little later.",
    add_community_title: "Add a community",
    add_community_hint: "A link or id, e.g. vk.com/club1001, vk.com/zerno_coffee or 1001",
    add_community_button: "Add",
    add_community_not_found: "VK has no such community. Check the link.",
    add_community_not_managed: "You do not manage this community: you can add only communities where you are an administrator, editor or moderator.",
    add_community_bad_input: "That does not look like a community link. Paste its address or id.",
    back_to_communities: "← All communities",
    community_role: "Your role",
    status_card_title: "Callback API",
    connect_button: "🔗 Connect Callback API",
    error_title: "Something went wrong",
    error_back_home: "Home",
    error_not_found: "There is no such page, or you have no access to it.",
    error_forbidden: "You cannot do this.",
    error_csrf: "The form is out of date or did not come from vkhook. Go back, reload the page and try again.",
    error_internal: "Internal error. It has been logged; please try again a little later.",
    error_unavailable: "The service is temporarily unavailable. Try again in a minute.",
    error_bad_request: "The request could not be understood.",
    signin_denied: "You cancelled signing in with VK ID. To use vkhook, allow access.",
    signin_state: "The sign-in link is out of date or was already used. Start signing in again.",
    signin_failed: "VK ID did not confirm the sign-in. Please try again.",
    signin_again: "Your VK session has expired. Sign in again to continue.",
    signed_out: "You have signed out of vkhook.",
    try_again: "Try again",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_language_we_speak() {
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,ru;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("ru-RU,ru;q=0.9,en;q=0.8"), Lang::Ru);
        assert_eq!(Lang::from_accept_language("de-DE,de;q=0.9,en;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr"), Lang::Ru);
        assert_eq!(Lang::from_accept_language(""), Lang::Ru);
    }

    #[test]
    fn fill_replaces_named_values() {
        assert_eq!(fill("{a} и {b}", &[("a", "1"), ("b", "2")]), "1 и 2");
    }
}
