//! The sandbox's state: users, communities with their walls, conversations and callback servers, issued tokens and
//! codes, delivery records and injected faults. Plain data behind one mutex; nothing here awaits.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

/// The API version a new callback server starts with until `setCallbackSettings` sets one (VK's default for new
/// servers is not documented; an old version makes a client that forgets `api_version` visible at once).
/// The rights VK documents for community tokens, with their bits (dev.vk.com "Права доступа для токена
/// сообщества"; VK Bridge `VKWebAppGetCommunityToken`). `wall` is not among them: it is a user right.
pub const COMMUNITY_RIGHTS: [(&str, u64); 6] =
    [("stories", 1), ("photos", 4), ("app_widget", 64), ("messages", 4096), ("docs", 131072), ("manage", 262144)];

pub const DEFAULT_SERVER_API_VERSION: &str = "5.81";

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub screen_name: String,
    /// The user hides their communities list (`groups.get` → error 260).
    pub groups_hidden: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Post {
    pub id: i64,
    pub from_id: i64,
    pub date: i64,
    pub text: String,
    pub comments_closed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: i64,
    pub post_id: i64,
    pub from_id: i64,
    pub date: i64,
    pub text: String,
    pub reply_to_comment: Option<i64>,
    pub reply_to_user: Option<i64>,
    pub parents_stack: Vec<i64>,
    pub guid: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    /// The user the conversation is with.
    pub peer_id: i64,
    /// The author: the user, or `-group_id` for the community's own messages.
    pub from_id: i64,
    pub out: bool,
    pub date: i64,
    pub text: String,
    pub random_id: i64,
    pub conversation_message_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    Unconfigured,
    Wait,
    Ok,
    Failed,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfigured => "unconfigured",
            Self::Wait => "wait",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub id: i64,
    pub title: String,
    pub url: String,
    pub secret_key: String,
    pub creator_id: i64,
    pub status: ServerStatus,
    pub api_version: String,
    /// Event types switched on.
    pub events: BTreeSet<String>,
    /// Bumped on every add/edit, so a stale confirmation result is ignored.
    #[serde(skip)]
    pub generation: u64,
    pub consecutive_failures: u32,
    #[serde(skip)]
    pub paused_until: Option<Instant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub screen_name: String,
    pub kind: &'static str,
    /// user id → admin level (1 moderator, 2 editor, 3 administrator).
    pub admins: BTreeMap<i64, i64>,
    pub members: BTreeSet<i64>,
    pub posts: Vec<Post>,
    pub comments: Vec<Comment>,
    pub messages: Vec<Message>,
    pub servers: Vec<Server>,
    /// The current confirmation code for servers set up through the API; a new one on every request for it.
    pub confirmation_code: String,
    /// Users who allowed the community to message them (writing first counts).
    pub messages_allowed: BTreeSet<i64>,
    /// The community's messages are switched on (Manage → Messages). Off: `messages.send` answers 945 "Chat was
    /// disabled" (`api_error_messages_chat_disabled` in the schema's errors).
    pub messages_enabled: bool,
    /// People whose conversation's reply window is over: `messages.send` to them answers 950 "Can't send message,
    /// reply timed out" (`api_error_messages_peer_blocked_reason_by_time`).
    pub reply_window_over: BTreeSet<i64>,
    /// Who created the community: `groups.getMembers(filter=managers)` lists them as `creator` (their
    /// `admin_level` still reads 3).
    pub creator: Option<i64>,
    /// Its Bots Long Poll: the one setting and the updates (`longpoll.rs`).
    #[serde(skip)]
    pub long_poll: crate::longpoll::LongPoll,
    #[serde(skip)]
    pub guids: HashMap<(i64, String), i64>,
    #[serde(skip)]
    pub random_ids: HashMap<(i64, i64), i64>,
    #[serde(skip)]
    next_server_id: i64,
    #[serde(skip)]
    next_comment_id: i64,
    #[serde(skip)]
    next_message_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenOwner {
    User(i64),
    Group(i64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub value: String,
    pub owner: TokenOwner,
    /// `user` or `group`.
    pub kind: &'static str,
    pub scopes: BTreeSet<String>,
    /// Sandbox unix time after which the token is dead (`None`: never).
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// Who issued it (the user who pressed «Разрешить»).
    pub granted_by: i64,
    pub client_id: String,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub user_id: i64,
    pub scopes: BTreeSet<String>,
    pub device_id: String,
    pub client_id: String,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct VkIdCode {
    pub user_id: i64,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: BTreeSet<String>,
    pub device_id: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct CommunityCode {
    pub user_id: i64,
    pub client_id: String,
    pub redirect_uri: String,
    /// group id → scopes granted for it.
    pub grants: BTreeMap<i64, BTreeSet<String>>,
    pub expires_at: i64,
}

/// One HTTP attempt to a callback server, as the control API and the world page show it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: u64,
    pub group_id: i64,
    pub server_id: i64,
    pub url: String,
    pub event_type: String,
    pub event_id: String,
    /// 0 for the first attempt; the `X-Retry-Counter` header carries it on retries.
    pub retry_counter: u32,
    /// Sandbox unix time in milliseconds.
    pub at_ms: i64,
    pub http_status: Option<u16>,
    /// The answer body (at most 200 characters), or the transport error.
    pub answer: String,
    /// `ok`, `confirmed`, `failed`, `removed`, `gave_up`.
    pub outcome: String,
    /// The request body exactly as sent.
    pub body: String,
}

/// An injected failure: for the next `remaining` calls of `method` (all methods if `None`), wait `latency_ms` and/or
/// answer `error_code`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// How many calls it applies to; `None`: until faults are cleared.
    #[serde(default, alias = "count")]
    pub remaining: Option<u32>,
}

/// What the world registered for an OAuth client (our app at VK).
#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: String,
    /// Exact redirect URIs allowed; empty: any `http(s)://` loopback address.
    pub redirect_uris: Vec<String>,
    /// Whether VK ID grants this app the `groups` scope. VK grants it only after a request to VK support; without
    /// it, VK ID drops `groups` from what it grants, and the token answer's `scope` says so (https://id.vk.com/about/business/go/docs/ru/vkid/latest/vk-id/connection/api-integration/api-description).
    pub grants_groups: bool,
}

pub struct World {
    pub users: BTreeMap<i64, User>,
    pub groups: BTreeMap<i64, Group>,
    pub app: App,
    pub tokens: HashMap<String, Token>,
    /// Issue order, for `/_sandbox/tokens`.
    pub token_order: Vec<String>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub vkid_codes: HashMap<String, VkIdCode>,
    pub community_codes: HashMap<String, CommunityCode>,
    pub deliveries: Vec<Delivery>,
    next_delivery_id: u64,
    pub faults: Vec<Fault>,
    pub rate: HashMap<String, VecDeque<Instant>>,
    /// How many times each API method (and `oauth.access_token`, the community code exchange) was called.
    pub calls: BTreeMap<String, u64>,
    /// Seconds added to the real clock (see `/_sandbox/clock`).
    pub clock_offset: i64,
    /// VK keeps `random_id`s and `guid`s for a time it does not document. When set, the sandbox forgets them at
    /// once, so a client that sends the same reply twice gets two (`/_sandbox/dedup`).
    pub forget_dedup_keys: bool,
    /// VK's documentation does not say whether `groups.editCallbackServer` sends a new confirmation to a server
    /// VK has set to `failed`. `true`: it does not, and the server stays `failed` (a client must delete it and add
    /// a fresh one); `false` (default): an edit confirms again, as for any server.
    pub edit_keeps_failed: bool,
    /// VK does not document whether `groups.getMembers(filter=managers)` answers a community key. `true`: it
    /// refuses (error 15), as the cautious reading has it; `false` (default): it answers, as the schema's
    /// `access_token_type` ([user, group, service]) says.
    pub managers_refuse_community_key: bool,
    /// VK does not document whether an event has the same `event_id` on Long Poll as on the Callback API (vkbottle's
    /// dual mode relies on it). `false` (default): the same; `true`: Long Poll gives its own, so that only an object's
    /// own key (a message's, a comment's) can tell the two copies apart.
    pub long_poll_own_event_ids: bool,
    /// Callback bodies this sandbox sent that VK's callback schema (`callback/objects.json`) does not allow; tests
    /// assert it stays empty.
    pub callback_violations: Vec<String>,
}

pub fn random_token(prefix: &str, len: usize) -> String {
    let body: String = rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect();
    format!("{prefix}{body}")
}

pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len.div_ceil(2)];
    rand::thread_rng().fill(&mut bytes[..]);
    let mut s = hex::encode(bytes);
    s.truncate(len);
    s
}

impl World {
    /// The fixed demo world that tests and `vkhook demo` rely on.
    pub fn demo(app: App) -> World {
        let mut users = BTreeMap::new();
        for (id, first, last, screen) in [
            (1, "Анна", "Админова", "anna_admin"),
            (2, "Иван", "Читатель", "ivan_reader"),
            (3, "Пётр", "Соседов", "petr_sosedov"),
            (4, "Мария", "Главредова", "maria_glavred"),
        ] {
            users.insert(
                id,
                User {
                    id,
                    first_name: first.into(),
                    last_name: last.into(),
                    screen_name: screen.into(),
                    groups_hidden: false,
                },
            );
        }
        let mut world = World {
            users,
            groups: BTreeMap::new(),
            app,
            tokens: HashMap::new(),
            token_order: Vec::new(),
            refresh_tokens: HashMap::new(),
            vkid_codes: HashMap::new(),
            community_codes: HashMap::new(),
            deliveries: Vec::new(),
            next_delivery_id: 1,
            faults: Vec::new(),
            calls: BTreeMap::new(),
            rate: HashMap::new(),
            clock_offset: 0,
            forget_dedup_keys: false,
            edit_keeps_failed: false,
            managers_refuse_community_key: false,
            long_poll_own_event_ids: false,
            callback_violations: Vec::new(),
        };
        let now = world.now();
        /// (id, name, screen name, type, admins with levels, the first post)
        type DemoGroup = (i64, &'static str, &'static str, &'static str, &'static [(i64, i64)], &'static str);
        let groups: [DemoGroup; 4] = [
            (
                1001,
                "Кофейня «Зерно»",
                "zerno_coffee",
                "page",
                &[(1, 3)],
                "Сегодня в меню: тыквенный латте и морковный торт. Ждём вас!",
            ),
            (
                1002,
                "Книжный клуб",
                "book_club",
                "group",
                &[(1, 3)],
                "В четверг обсуждаем «Мастера и Маргариту». Кто идёт?",
            ),
            (
                1003,
                "Городские новости",
                "city_news",
                "page",
                &[(4, 3), (1, 2)],
                "На улице Ленина открыли новую библиотеку.",
            ),
            (
                1004,
                "Соседский чат",
                "sosedi_chat",
                "group",
                &[(3, 3)],
                "Во дворе в субботу субботник, приходите в 10:00.",
            ),
        ];
        for (id, name, screen, kind, admins, post) in groups {
            let mut g = Group::new(id, name, screen, kind, admins, [2].into_iter().collect(), post, now - 86_400);
            g.posts.push(Post {
                id: 2,
                from_id: -id,
                date: now - 3_600,
                text: "Комментарии к этой записи закрыты.".into(),
                comments_closed: true,
            });
            world.groups.insert(id, g);
        }
        world
    }

    /// Communities 2001, 2002, … «Сообщество N», administered by user 1, each with an open post.
    pub fn add_extra_communities(&mut self, count: usize) {
        let now = self.now();
        for i in 0..count as i64 {
            let id = 2001 + i;
            let members = [2].into_iter().collect();
            let group = Group::new(
                id,
                &format!("Сообщество {id}"),
                &format!("community_{id}"),
                "group",
                &[(1, 3)],
                members,
                "Первая запись.",
                now,
            );
            self.groups.insert(id, group);
        }
    }

    /// Sandbox unix time in seconds.
    pub fn now(&self) -> i64 {
        unix_now_ms() / 1000 + self.clock_offset
    }

    pub fn now_ms(&self) -> i64 {
        unix_now_ms() + self.clock_offset * 1000
    }

    pub fn issue_token(
        &mut self,
        owner: TokenOwner,
        scopes: BTreeSet<String>,
        lifetime: Option<i64>,
        granted_by: i64,
        client_id: &str,
    ) -> String {
        let value = random_token("vk1.a.", 80);
        let kind = match owner {
            TokenOwner::User(_) => "user",
            TokenOwner::Group(_) => "group",
        };
        let expires_at = lifetime.map(|l| self.now() + l);
        self.tokens.insert(
            value.clone(),
            Token {
                value: value.clone(),
                owner,
                kind,
                scopes,
                expires_at,
                revoked: false,
                granted_by,
                client_id: client_id.to_owned(),
            },
        );
        self.token_order.push(value.clone());
        value
    }

    pub fn group(&self, id: i64) -> Option<&Group> {
        self.groups.get(&id)
    }

    pub fn group_mut(&mut self, id: i64) -> Option<&mut Group> {
        self.groups.get_mut(&id)
    }

    /// Finds a community by id, `club<id>`/`public<id>`/`event<id>`, or screen name.
    pub fn find_group(&self, key: &str) -> Option<&Group> {
        let key = key.trim();
        let digits = ["club", "public", "event"]
            .iter()
            .find_map(|p| key.strip_prefix(p).filter(|rest| rest.chars().all(|c| c.is_ascii_digit())))
            .unwrap_or(key);
        if let Ok(id) = digits.parse::<i64>() {
            return self.groups.get(&id);
        }
        self.groups.values().find(|g| g.screen_name == key)
    }

    pub fn find_user(&self, key: &str) -> Option<&User> {
        let key = key.trim();
        let digits = key.strip_prefix("id").filter(|r| r.chars().all(|c| c.is_ascii_digit())).unwrap_or(key);
        if let Ok(id) = digits.parse::<i64>() {
            return self.users.get(&id);
        }
        self.users.values().find(|u| u.screen_name == key)
    }

    pub fn record_delivery(&mut self, mut d: Delivery) -> u64 {
        d.id = self.next_delivery_id;
        self.next_delivery_id += 1;
        let id = d.id;
        self.deliveries.push(d);
        id
    }

    /// Takes the first fault that applies to `method`, counting it.
    /// Counts a call of `method` and takes the fault injected for it, if any.
    pub fn called(&mut self, method: &str) -> Option<Fault> {
        *self.calls.entry(method.to_owned()).or_default() += 1;
        self.take_fault(method)
    }

    pub fn take_fault(&mut self, method: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.method.as_deref().is_none_or(|m| m == method) && f.remaining.is_none_or(|n| n > 0))?;
        let fault = self.faults[index].clone();
        if let Some(n) = &mut self.faults[index].remaining {
            *n -= 1;
            if *n == 0 {
                self.faults.remove(index);
            }
        }
        Some(fault)
    }

    /// Counts a call under `token`; false when it is over `per_second` in the last second.
    /// At most `limit` calls with `token` in any `window` (VK: per second).
    pub fn rate_allows(&mut self, token: &str, limit: usize, window_len: Duration) -> bool {
        let now = Instant::now();
        let window = self.rate.entry(token.to_owned()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= window_len) {
            window.pop_front();
        }
        if window.len() >= limit {
            return false;
        }
        window.push_back(now);
        true
    }
}

pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Group {
    /// A community with `admins` (user → level), members (the admins too), and one open post.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        name: &str,
        screen_name: &str,
        kind: &'static str,
        admins: &[(i64, i64)],
        members: BTreeSet<i64>,
        first_post: &str,
        date: i64,
    ) -> Group {
        Group {
            id,
            name: name.into(),
            screen_name: screen_name.into(),
            kind,
            admins: admins.iter().copied().collect(),
            members: members.into_iter().chain(admins.iter().map(|(u, _)| *u)).collect(),
            posts: vec![Post { id: 1, from_id: -id, date, text: first_post.into(), comments_closed: false }],
            comments: Vec::new(),
            messages: Vec::new(),
            servers: Vec::new(),
            confirmation_code: random_hex(8),
            messages_allowed: BTreeSet::new(),
            messages_enabled: true,
            reply_window_over: BTreeSet::new(),
            creator: admins.iter().find(|(_, level)| *level == 3).map(|(user, _)| *user),
            long_poll: Default::default(),
            guids: HashMap::new(),
            random_ids: HashMap::new(),
            next_server_id: 1,
            next_comment_id: 1,
            next_message_id: 1,
        }
    }

    pub fn admin_level(&self, user_id: i64) -> Option<i64> {
        self.admins.get(&user_id).copied()
    }

    /// A manager's role in `groups.getMembers(filter=managers)` (`groups_member_role` in the schema).
    pub fn manager_role(&self, user_id: i64) -> Option<&'static str> {
        Some(match self.admin_level(user_id)? {
            3 if self.creator == Some(user_id) => "creator",
            3 => "administrator",
            2 => "editor",
            _ => "moderator",
        })
    }

    /// Sets `user_id`'s level (1 moderator, 2 editor, 3 administrator; `None`: not a manager), as another
    /// administrator would in VK's settings. Nobody is told.
    pub fn set_admin_level(&mut self, user_id: i64, level: Option<i64>) {
        match level {
            Some(level) => {
                self.admins.insert(user_id, level);
                self.members.insert(user_id);
            }
            None => {
                self.admins.remove(&user_id);
            }
        }
    }

    pub fn post(&self, id: i64) -> Option<&Post> {
        self.posts.iter().find(|p| p.id == id)
    }

    pub fn comment(&self, id: i64) -> Option<&Comment> {
        self.comments.iter().find(|c| c.id == id)
    }

    pub fn server(&self, id: i64) -> Option<&Server> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub fn server_mut(&mut self, id: i64) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.id == id)
    }

    pub fn add_server(&mut self, title: &str, url: &str, secret_key: &str, creator_id: i64) -> &mut Server {
        let id = self.next_server_id;
        self.next_server_id += 1;
        self.servers.push(Server {
            id,
            title: title.into(),
            url: url.into(),
            secret_key: secret_key.into(),
            creator_id,
            status: ServerStatus::Unconfigured,
            api_version: DEFAULT_SERVER_API_VERSION.into(),
            events: BTreeSet::new(),
            generation: 0,
            consecutive_failures: 0,
            paused_until: None,
        });
        self.servers.last_mut().expect("just pushed")
    }

    /// Adds a comment; returns it. `parents_stack` and `reply_to_user` follow the comment replied to.
    pub fn add_comment(
        &mut self,
        post_id: i64,
        from_id: i64,
        text: &str,
        reply_to: Option<i64>,
        guid: Option<String>,
        date: i64,
    ) -> Comment {
        let id = self.next_comment_id;
        self.next_comment_id += 1;
        let parent = reply_to.and_then(|r| self.comment(r)).cloned();
        let comment = Comment {
            id,
            post_id,
            from_id,
            date,
            text: text.into(),
            reply_to_comment: parent.as_ref().map(|p| p.id),
            reply_to_user: parent.as_ref().map(|p| p.from_id),
            parents_stack: parent.map(|p| vec![p.parents_stack.first().copied().unwrap_or(p.id)]).unwrap_or_default(),
            guid,
        };
        self.comments.push(comment.clone());
        comment
    }

    pub fn add_message(&mut self, peer_id: i64, from_id: i64, text: &str, random_id: i64, date: i64) -> Message {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let conversation_message_id = self.messages.iter().filter(|m| m.peer_id == peer_id).count() as i64 + 1;
        let message = Message {
            id,
            peer_id,
            from_id,
            out: from_id < 0,
            date,
            text: text.into(),
            random_id,
            conversation_message_id,
        };
        self.messages.push(message.clone());
        message
    }

    /// As VK shows a community in `groups.get extended=1` / `groups.getById`. `viewer`: the user whose roles VK
    /// reveals — only a user token with the `groups` scope gets `is_admin`, `admin_level` and `is_member`
    /// ("Required scope = groups", https://dev.vk.com/en/reference/objects/group); the caller passes `None`
    /// otherwise.
    pub fn to_json(&self, viewer: Option<i64>, base_url: &str) -> Value {
        let mut g = json!({
            "id": self.id,
            "name": self.name,
            "screen_name": self.screen_name,
            "is_closed": 0,
            "type": self.kind,
            "photo_50": format!("{base_url}/avatars/group/{}.svg", self.id),
            "photo_100": format!("{base_url}/avatars/group/{}.svg", self.id),
            "photo_200": format!("{base_url}/avatars/group/{}.svg", self.id),
        });
        if let Some(viewer) = viewer {
            let level = self.admin_level(viewer);
            g["is_admin"] = json!(i64::from(level.is_some()));
            if let Some(level) = level {
                g["admin_level"] = json!(level);
            }
            g["is_member"] = json!(i64::from(self.members.contains(&viewer)));
        }
        g
    }
}

impl Comment {
    /// The `wall_reply_*` object and the comment as `wall.getComments` would show it.
    pub fn to_json(&self, group_id: i64) -> Value {
        let mut c = json!({
            "id": self.id,
            "from_id": self.from_id,
            "date": self.date,
            "text": self.text,
            "post_id": self.post_id,
            "owner_id": -group_id,
            "parents_stack": self.parents_stack,
            "post_owner_id": -group_id,
        });
        if let Some(r) = self.reply_to_comment {
            c["reply_to_comment"] = json!(r);
        }
        if let Some(u) = self.reply_to_user {
            c["reply_to_user"] = json!(u);
        }
        c
    }
}

impl Message {
    pub fn to_json(&self) -> Value {
        json!({
            "date": self.date,
            "from_id": self.from_id,
            "id": self.id,
            "out": i64::from(self.out),
            "attachments": [],
            "conversation_message_id": self.conversation_message_id,
            "fwd_messages": [],
            "important": false,
            "is_hidden": false,
            "peer_id": self.peer_id,
            "random_id": self.random_id,
            "text": self.text,
            // Required by VK's schema (`messages_base_message.version`); a message that was never edited.
            "version": 1,
        })
    }
}

impl User {
    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "can_access_closed": true,
            "is_closed": false,
            "screen_name": self.screen_name,
            "photo_100": format!("{base_url}/avatars/user/{}.svg", self.id),
        })
    }
}
