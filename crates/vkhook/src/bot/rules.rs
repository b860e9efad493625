//! «если текст содержит … → ответить …»: case-insensitive whole-word matching of keywords (or phrases) in order.

use crate::store::RuleRow;

/// The words of `text`, lowercased: runs of letters and digits (`ё` counts as `е`).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('ё', "е"))
        .collect()
}

/// Keywords as typed by the admin: separated by commas or new lines; each may be a phrase.
pub fn keywords(list: &str) -> Vec<Vec<String>> {
    list.split([',', '\n', ';']).map(words).filter(|k| !k.is_empty()).collect()
}

/// Whether `phrase` (a sequence of words) occurs in `text_words` as whole words.
fn contains_phrase(text_words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && text_words.windows(phrase.len()).any(|w| w == phrase)
}

/// What answers a text: the first rule with a keyword in it, else the default reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    Rule(&'a RuleRow),
    Default(&'a str),
    Nothing,
}

pub fn decide<'a>(text: &str, rules: &'a [RuleRow], default_reply: Option<&'a str>) -> Decision<'a> {
    let text_words = words(text);
    for rule in rules {
        if keywords(&rule.keywords).iter().any(|k| contains_phrase(&text_words, k)) {
            return Decision::Rule(rule);
        }
    }
    match default_reply.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => Decision::Default(d),
        None => Decision::Nothing,
    }
}

/// Longest reply kept, a rule's or the default (VK allows 9000 characters in a message; comments are shorter).
pub const MAX_REPLY: usize = 4000;
/// Longest keyword list of a rule.
pub const MAX_KEYWORDS: usize = 1000;

/// A rule as the admin typed it, checked: at least one keyword, a reply, neither too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    keywords: String,
    reply: String,
}

/// The rule cannot be kept as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a rule needs a keyword and a reply, each within its length")]
pub struct InvalidRule;

impl NewRule {
    pub fn parse(keywords: &str, reply: &str) -> Result<NewRule, InvalidRule> {
        let (keywords, reply) = (keywords.trim(), reply.trim());
        if self::keywords(keywords).is_empty()
            || reply.is_empty()
            || keywords.chars().count() > MAX_KEYWORDS
            || reply.chars().count() > MAX_REPLY
        {
            return Err(InvalidRule);
        }
        Ok(NewRule { keywords: keywords.to_owned(), reply: reply.to_owned() })
    }

    pub fn keywords(&self) -> &str {
        &self.keywords
    }

    pub fn reply(&self) -> &str {
        &self.reply
    }
}

/// A default reply as typed, cut to [`MAX_REPLY`] characters (empty: none).
pub fn default_reply(typed: &str) -> Option<String> {
    let typed = typed.trim();
    (!typed.is_empty()).then(|| typed.chars().take(MAX_REPLY).collect())
}

/// Fills `{first_name}`; without a name, drops it with the comma or space before it.
pub fn fill_reply(template: &str, first_name: Option<&str>) -> String {
    match first_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => template.replace("{first_name}", name),
        None => template.replace(", {first_name}", "").replace(" {first_name}", "").replace("{first_name}", ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i64, keywords: &str, reply: &str) -> RuleRow {
        RuleRow { id, group_id: 1, position: id, keywords: keywords.into(), reply: reply.into() }
    }

    #[test]
    fn a_rule_needs_a_keyword_and_a_reply_within_their_lengths() {
        let rule = NewRule::parse(" цена, адрес ", " Цены в меню. ").unwrap();
        assert_eq!((rule.keywords(), rule.reply()), ("цена, адрес", "Цены в меню."));
        assert_eq!(NewRule::parse(", ;", "Ответ"), Err(InvalidRule), "no word among the keywords");
        assert_eq!(NewRule::parse("цена", "  "), Err(InvalidRule));
        assert!(NewRule::parse(&"а".repeat(MAX_KEYWORDS), &"б".repeat(MAX_REPLY)).is_ok());
        assert_eq!(NewRule::parse(&"а".repeat(MAX_KEYWORDS + 1), "Ответ"), Err(InvalidRule));
        assert_eq!(NewRule::parse("цена", &"б".repeat(MAX_REPLY + 1)), Err(InvalidRule));
        assert_eq!(default_reply("  "), None);
        assert_eq!(default_reply(&"б".repeat(MAX_REPLY + 5)).map(|r| r.chars().count()), Some(MAX_REPLY));
    }

    #[test]
    fn keywords_match_whole_words_case_insensitively() {
        let rules = vec![rule(1, "цена, стоимость", "Цены в меню."), rule(2, "до скольки, часы работы", "С 8 до 22.")];
        assert_eq!(decide("Какая ЦЕНА латте?", &rules, None), Decision::Rule(&rules[0]));
        assert_eq!(decide("А до скольки вы сегодня?", &rules, None), Decision::Rule(&rules[1]));
        // Whole words only: «ценах» is not «цена»; a phrase needs its words in order.
        assert_eq!(decide("Что с ценами?", &rules, None), Decision::Nothing);
        assert_eq!(decide("сколько до", &rules, None), Decision::Nothing);
        assert_eq!(decide("Что с ценами?", &rules, Some("Спасибо!")), Decision::Default("Спасибо!"));
        assert_eq!(decide("x", &rules, Some("  ")), Decision::Nothing);
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = vec![rule(1, "торт", "Торты на заказ."), rule(2, "торт, кофе", "Другое.")];
        assert_eq!(decide("Хочу торт и кофе", &rules, None), Decision::Rule(&rules[0]));
    }

    #[test]
    fn yo_and_punctuation_do_not_get_in_the_way() {
        let rules = vec![rule(1, "ещё", "Да!")];
        assert_eq!(decide("А еще?!", &rules, None), Decision::Rule(&rules[0]));
        assert_eq!(words("Привет,мир!!"), vec!["привет", "мир"]);
    }

    #[test]
    fn first_name_is_filled_or_dropped_cleanly() {
        assert_eq!(fill_reply("Здравствуйте, {first_name}!", Some("Иван")), "Здравствуйте, Иван!");
        assert_eq!(fill_reply("Здравствуйте, {first_name}!", None), "Здравствуйте!");
        assert_eq!(fill_reply("Привет {first_name}", Some(" ")), "Привет");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn word() -> impl Strategy<Value = String> {
            prop_oneof![Just("цена".to_owned()), Just("торт".to_owned()), Just("кофе".to_owned()), "[a-zа-я]{1,6}"]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            /// The rule chosen has a keyword in the text as whole words, and no rule before it has one; without a
            /// matching rule, the default reply (if any) answers.
            #[test]
            fn the_chosen_rule_is_the_first_that_matches(
                rules in prop::collection::vec(prop::collection::vec(word(), 1..3), 0..5),
                text in prop::collection::vec(word(), 0..8),
                default in prop::option::of("[a-z ]{0,5}"),
            ) {
                let rows: Vec<RuleRow> =
                    rules.iter().enumerate().map(|(i, k)| rule(i as i64, &k.join(", "), "r")).collect();
                let text = text.join(" ");
                let matches = |r: &RuleRow| keywords(&r.keywords).iter().any(|k| contains_phrase(&words(&text), k));
                match decide(&text, &rows, default.as_deref()) {
                    Decision::Rule(r) => {
                        prop_assert!(matches(r));
                        prop_assert!(rows.iter().take_while(|x| x.id != r.id).all(|x| !matches(x)));
                    }
                    Decision::Default(d) => {
                        prop_assert!(rows.iter().all(|x| !matches(x)));
                        prop_assert_eq!(Some(d), default.as_deref().map(str::trim));
                    }
                    Decision::Nothing => {
                        prop_assert!(rows.iter().all(|x| !matches(x)));
                        prop_assert!(default.as_deref().is_none_or(|d| d.trim().is_empty()));
                    }
                }
            }

            /// `{first_name}` never survives: it becomes the name, or goes with its comma or space.
            #[test]
            fn first_name_never_survives(
                before in "[^{}]{0,10}", after in "[^{}]{0,10}", name in prop::option::of("[A-Za-zА-Яа-я]{0,8}"),
            ) {
                let filled = fill_reply(&format!("{before}{{first_name}}{after}"), name.as_deref());
                prop_assert!(!filled.contains("{first_name}"), "{}", filled);
                if let Some(n) = name.as_deref().filter(|n| !n.trim().is_empty()) {
                    prop_assert_eq!(filled, format!("{before}{n}{after}"));
                }
            }
        }
    }
}
