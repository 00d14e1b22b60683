//! KAR's prompts (KAR_REFERENCE §3) as minijinja templates, and the context every template
//! (built-in or custom) is rendered with.
//!
//! User templates see `user` (`id`, `raw_id`, `gender` "female"/"male", `age`, `age_group`,
//! `occupation`, `occupation_phrase`; demographics only where the dataset has them),
//! `history` (the LLM-history window in time order: `title`, `rating`, `attributes`, a map
//! from attribute field to value), `history_text` (KAR's `"Title", 5 stars; ` lines),
//! `factors` / `factors_text` and `flavour`. Item templates see `item` (`id`, `raw_id`,
//! `title`, `attributes` and each attribute field by name, e.g. `item.brand`), `factors`,
//! `factors_text` and `flavour`.

use minijinja::{context, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::data::preprocess::{Dataset, Item, User};
use crate::data::Flavour;

/// Movie factors for the user side (KAR's factorization prompting).
pub const MOVIE_USER_FACTORS: [&str; 9] = [
    "genre",
    "director/actors",
    "time period/country",
    "character",
    "plot/theme",
    "mood/tone",
    "critical acclaim/award",
    "production quality",
    "soundtrack",
];
/// Movie factors for the item side.
pub const MOVIE_ITEM_FACTORS: [&str; 9] = [
    "genre",
    "director/cast",
    "country",
    "character",
    "plot/theme",
    "mood/tone",
    "critical acclaim/award",
    "production quality",
    "soundtrack",
];
/// Book factors (both sides).
pub const BOOK_FACTORS: [&str; 9] = [
    "genre",
    "author",
    "writing style",
    "theme",
    "setting",
    "length and complexity",
    "time period",
    "literary quality",
    "critical acclaim",
];

/// The user-preference prompt for movies.
pub const MOVIE_PREFERENCE: &str = "{% if user.gender %}Given a {{ user.gender }} user who is aged {{ user.age_group }} and {{ user.occupation_phrase }}, this user's movie viewing history over time is listed below. {% else %}Given a user, this user's movie viewing history over time is listed below. {% endif %}{{ history_text }}Analyze the user's preferences on movies, considering factors such as {{ factors_text }}. Provide clear explanations based on relevant details from the user's movie viewing history and other pertinent factors.";
/// The user-preference prompt for books.
pub const BOOK_PREFERENCE: &str = "Given user's book rating history: {{ history_text }}Analyze the user's preferences on books, considering factors such as {{ factors_text }}. Provide clear explanations based on relevant details from the user's book rating history and other pertinent factors.";
/// The item-fact prompt for movies.
pub const MOVIE_FACTS: &str = "Introduce movie {{ item.title }} and describe its attributes including but not limited to {{ factors_text }}.";
/// The item-fact prompt for books.
pub const BOOK_FACTS: &str = "Introduce book {{ item.title }}, which is from brand {{ item.brand }} and describe its attributes including but not limited to {{ factors_text }}.";

/// "a, b, and c".
pub fn join_factors(f: &[&str]) -> String {
    match f {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

/// MovieLens-1M's age groups in words; other ages are bucketed the same way.
pub fn age_group(age: i32) -> &'static str {
    match age {
        a if a < 18 => "under 18",
        a if a < 25 => "18-24",
        a if a < 35 => "25-34",
        a if a < 45 => "35-44",
        a if a < 50 => "45-49",
        a if a < 56 => "50-55",
        _ => "56+",
    }
}

/// An occupation worded to follow "and" ("an artist", "in clerical/admin department").
pub fn occupation_phrase(occupation: &str) -> String {
    let fixed = match occupation {
        "other" => "in an unknown occupation",
        "clerical/admin" => "in clerical/admin department",
        "customer service" => "in customer service",
        "doctor/health care" => "a doctor or health care worker",
        "executive/managerial" => "an executive or manager",
        "retired" => "retired",
        "sales/marketing" => "in sales/marketing",
        "self-employed" => "self-employed",
        "unemployed" | "none" => "unemployed",
        "entertainment" => "in entertainment",
        "healthcare" => "in healthcare",
        "marketing" => "in marketing",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_string();
    }
    let article = if occupation.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
    format!("{article} {occupation}")
}

/// KAR's history line: `"Title", 5 stars; `.
pub fn history_line(title: &str, rating: f32) -> String {
    format!("\"{title}\", {} stars; ", rating.round() as i64)
}

#[derive(Serialize)]
struct UserCtx {
    id: i32,
    raw_id: String,
    gender: Option<&'static str>,
    age: Option<i32>,
    age_group: Option<&'static str>,
    occupation: Option<String>,
    occupation_phrase: Option<String>,
}

#[derive(Serialize)]
struct HistoryCtx {
    title: String,
    rating: i64,
    attributes: std::collections::BTreeMap<String, String>,
}

fn attributes_map(d: &Dataset, it: &Item) -> std::collections::BTreeMap<String, String> {
    d.attribute_fields.iter().cloned().zip(it.attributes.iter().cloned()).collect()
}

/// The template context for a user's preference prompt.
pub fn user_context(d: &Dataset, u: &User, seq: &[crate::data::preprocess::Interaction]) -> Value {
    let demo = u.demographics.clone().unwrap_or_default();
    let user = UserCtx {
        id: u.id,
        raw_id: u.raw_id.clone(),
        gender: demo.gender.as_deref().map(|g| if g == "F" { "female" } else { "male" }),
        age: demo.age,
        age_group: demo.age.map(age_group),
        occupation_phrase: demo.occupation.as_deref().map(occupation_phrase),
        occupation: demo.occupation,
    };
    let window = &seq[..(u.window as usize).min(seq.len())];
    let mut history = Vec::with_capacity(window.len());
    let mut text = String::new();
    for x in window {
        let Some(it) = d.item(x.item) else { continue };
        text.push_str(&history_line(&it.title, x.rating));
        history.push(HistoryCtx { title: it.title.clone(), rating: x.rating.round() as i64, attributes: attributes_map(d, it) });
    }
    let factors: &[&str] = if d.flavour == Flavour::Movies { &MOVIE_USER_FACTORS } else { &BOOK_FACTORS };
    context! {
        user => Value::from_serialize(&user),
        history => Value::from_serialize(&history),
        history_text => text,
        factors => factors,
        factors_text => join_factors(factors),
        flavour => if d.flavour == Flavour::Movies { "movies" } else { "books" },
    }
}

/// The template context for an item's fact prompt.
pub fn item_context(d: &Dataset, it: &Item) -> Value {
    let mut item = serde_json::json!({ "id": it.id, "raw_id": it.raw_id, "title": it.title, "attributes": attributes_map(d, it) });
    for (k, v) in attributes_map(d, it) {
        item[k] = serde_json::Value::String(v);
    }
    let factors: &[&str] = if d.flavour == Flavour::Movies { &MOVIE_ITEM_FACTORS } else { &BOOK_FACTORS };
    context! {
        item => Value::from_serialize(&item),
        factors => factors,
        factors_text => join_factors(factors),
        flavour => if d.flavour == Flavour::Movies { "movies" } else { "books" },
    }
}

/// A template environment where a misspelt field is an error, not empty text.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    env
}

/// Checks a template's syntax; the message names the line.
pub fn check_template(source: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

/// A minijinja error with its line, for messages.
pub fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(l) => format!("{} (template line {l})", e.detail().unwrap_or(&e.to_string())),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::{Interaction, Settings, Split};
    use crate::data::raw::Demographics;

    fn dataset(flavour: Flavour) -> Dataset {
        let movies = flavour == Flavour::Movies;
        let fields: Vec<String> = if movies { vec!["genre".into()] } else { vec!["brand".into(), "category".into()] };
        let titles = ["Toy Story (1995)", "Heat (1995)", "Café Society (2016)", "Alien (1979)"];
        let items = titles
            .iter()
            .enumerate()
            .map(|(i, t)| Item {
                id: i as i32 + 1,
                raw_id: format!("r{i}"),
                title: t.to_string(),
                attributes: if movies { vec!["Comedy".into()] } else { vec!["Ann Author".into(), "Mystery".into()] },
                attribute_ids: vec![1],
                has_meta: true,
            })
            .collect();
        let ratings = [5.0, 3.0, 4.0, 1.0];
        let interactions = ratings
            .iter()
            .enumerate()
            .map(|(p, &r)| Interaction { user: 1, item: p as i32 + 1, rating: r, timestamp: p as i64, position: p as i32, label: r > 3.0 })
            .collect();
        Dataset {
            name: "t".into(),
            flavour,
            attribute_fields: fields,
            settings: Settings::kar_defaults("t", flavour),
            items,
            users: vec![User {
                id: 1,
                raw_id: "42".into(),
                split: Split::Train,
                window: 3,
                interactions: 4,
                demographics: movies.then(|| Demographics { gender: Some("F".into()), age: Some(25), occupation: Some("clerical/admin".into()) }),
                truth: None,
            }],
            interactions,
            lists: vec![],
            attribute_count: 1,
        }
    }

    fn render(src: &str, c: &Value) -> String {
        environment().template_from_str(src).unwrap().render(c).unwrap()
    }

    #[test]
    fn movie_preference_snapshot() {
        let d = dataset(Flavour::Movies);
        let seqs = d.sequences();
        let text = render(MOVIE_PREFERENCE, &user_context(&d, &d.users[0], seqs[0]));
        assert_eq!(
            text,
            "Given a female user who is aged 25-34 and in clerical/admin department, this user's movie viewing history over time is listed below. \
             \"Toy Story (1995)\", 5 stars; \"Heat (1995)\", 3 stars; \"Café Society (2016)\", 4 stars; \
             Analyze the user's preferences on movies, considering factors such as genre, director/actors, time period/country, character, \
             plot/theme, mood/tone, critical acclaim/award, production quality, and soundtrack. Provide clear explanations based on relevant \
             details from the user's movie viewing history and other pertinent factors."
        );
        // KAR's encoder keeps the text up to the last ';': the instruction has none.
        let cut = &text[..text.rfind(';').unwrap()];
        assert!(cut.ends_with("\"Café Society (2016)\", 4 stars"), "{cut}");
    }

    #[test]
    fn book_prompts_snapshot() {
        let d = dataset(Flavour::Books);
        let seqs = d.sequences();
        let text = render(BOOK_PREFERENCE, &user_context(&d, &d.users[0], seqs[0]));
        assert_eq!(
            text,
            "Given user's book rating history: \"Toy Story (1995)\", 5 stars; \"Heat (1995)\", 3 stars; \"Café Society (2016)\", 4 stars; \
             Analyze the user's preferences on books, considering factors such as genre, author, writing style, theme, setting, length and \
             complexity, time period, literary quality, and critical acclaim. Provide clear explanations based on relevant details from the \
             user's book rating history and other pertinent factors."
        );
        let facts = render(BOOK_FACTS, &item_context(&d, &d.items[1]));
        assert_eq!(
            facts,
            "Introduce book Heat (1995), which is from brand Ann Author and describe its attributes including but not limited to genre, \
             author, writing style, theme, setting, length and complexity, time period, literary quality, and critical acclaim."
        );
    }

    #[test]
    fn movie_facts_and_custom_fields() {
        let d = dataset(Flavour::Movies);
        let facts = render(MOVIE_FACTS, &item_context(&d, &d.items[3]));
        assert!(facts.starts_with("Introduce movie Alien (1979) and describe its attributes including but not limited to genre, director/cast, country,"));
        let seqs = d.sequences();
        let c = user_context(&d, &d.users[0], seqs[0]);
        let custom = render("{{ user.raw_id }}|{{ user.age }}|{{ history | length }}|{% for h in history %}{{ h.title }}={{ h.rating }}/{{ h.attributes.genre }};{% endfor %}", &c);
        assert_eq!(custom, "42|25|3|Toy Story (1995)=5/Comedy;Heat (1995)=3/Comedy;Café Society (2016)=4/Comedy;");
        // A misspelt field is an error, not empty text.
        let err = environment().template_from_str("{{ usr.id }}").unwrap().render(&c).unwrap_err();
        assert!(describe(&err).contains("undefined"), "{}", describe(&err));
        assert!(check_template("{% for x in %}").unwrap_err().contains("line 1"));
    }

    #[test]
    fn phrases() {
        assert_eq!(occupation_phrase("artist"), "an artist");
        assert_eq!(occupation_phrase("other"), "in an unknown occupation");
        assert_eq!(occupation_phrase("writer"), "a writer");
        assert_eq!(age_group(1), "under 18");
        assert_eq!(age_group(56), "56+");
        assert_eq!(age_group(47), "45-49");
        assert_eq!(join_factors(&["a", "b", "c"]), "a, b, and c");
    }
}
