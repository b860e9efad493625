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
}
