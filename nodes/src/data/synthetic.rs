//! The synthetic world: users with latent tastes over genres (and, for books, favourite
//! authors), items whose titles and attributes express their genre, ratings drawn from taste
//! match plus item quality and noise, exposure driven by popularity and taste, and
//! timestamps. Text that states a user's tastes therefore helps ranking, and a more accurate
//! statement helps more. The ground-truth tastes are recorded per user (JSON) so later stages
//! can be checked against them; no model reads them.

use std::collections::HashSet;

use rand::distr::{Distribution, Uniform};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::movielens::{GENRES, ML1M_AGES};
use super::raw::{DataError, Demographics, Flavour, ItemMeta, Rating, RawData};

/// Book genres of the books flavour.
pub const BOOK_GENRES: [&str; 16] = [
    "Mystery",
    "Romance",
    "Fantasy",
    "Science Fiction",
    "Thriller",
    "Horror",
    "Historical Fiction",
    "Biography",
    "Self-Help",
    "Poetry",
    "Young Adult",
    "Children's Books",
    "Cooking",
    "Travel",
    "Business",
    "Philosophy",
];

/// Settings of a synthetic world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorldSettings {
    pub flavour: Flavour,
    pub users: u32,
    pub items: u32,
    /// Mean ratings per user (at least `min_ratings`, heavy-tailed above it).
    pub ratings_per_user: u32,
    pub min_ratings: u32,
    /// How strongly tastes (rather than popularity) decide what a user rates.
    pub taste_exposure: f64,
    /// Standard deviation of the rating noise, in stars.
    pub noise: f64,
}

impl WorldSettings {
    pub fn new(flavour: Flavour) -> WorldSettings {
        WorldSettings { flavour, users: 300, items: 400, ratings_per_user: 40, min_ratings: 20, taste_exposure: 1.5, noise: 0.6 }
    }
}

/// A user's ground truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Genres the user loves, strongest first.
    pub likes: Vec<String>,
    /// Genres the user dislikes.
    pub dislikes: Vec<String>,
    /// Authors the user loves (books flavour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub favourite_authors: Vec<String>,
    /// Taste weight per genre, in genre order.
    pub weights: Vec<(String, f64)>,
}

struct Words {
    adjectives: &'static [&'static str],
    nouns: &'static [&'static str],
}

fn words(genre: &str) -> Words {
    let (adjectives, nouns): (&[&str], &[&str]) = match genre {
        "Action" | "Thriller" => (&["Deadly", "Final", "Hard", "Lethal", "Rogue", "Silent"], &["Strike", "Target", "Pursuit", "Mission", "Fury", "Escape"]),
        "Adventure" | "Travel" => (&["Lost", "Wild", "Far", "Golden", "Hidden", "Endless"], &["Journey", "Island", "Expedition", "Voyage", "Road", "Frontier"]),
        "Animation" | "Children's" | "Children's Books" => (&["Little", "Magic", "Happy", "Brave", "Tiny", "Jolly"], &["Bear", "Dragon", "Friends", "Puppy", "Kingdom", "Balloon"]),
        "Comedy" => (&["Crazy", "Silly", "Awkward", "Funny", "Wacky", "Lucky"], &["Wedding", "Weekend", "Roommates", "Vacation", "Business", "Mix-Up"]),
        "Crime" | "Mystery" | "Film-Noir" => (&["Dark", "Cold", "Stolen", "Secret", "Crooked", "Midnight"], &["Case", "Alibi", "Detective", "Heist", "Witness", "Clue"]),
        "Documentary" | "Biography" => (&["True", "Real", "Untold", "Inside", "Early", "Remarkable"], &["Story", "Life", "Years", "Portrait", "Record", "Legacy"]),
        "Drama" | "Historical Fiction" => (&["Quiet", "Broken", "Distant", "Long", "Last", "Bitter"], &["Summer", "Promise", "Letters", "Winter", "Homecoming", "Harvest"]),
        "Fantasy" => (&["Enchanted", "Ancient", "Crystal", "Shadow", "Elven", "Cursed"], &["Sword", "Realm", "Crown", "Prophecy", "Throne", "Spell"]),
        "Horror" => (&["Haunted", "Bloody", "Hollow", "Wicked", "Undead", "Creeping"], &["House", "Graveyard", "Curse", "Nightmare", "Ritual", "Cellar"]),
        "Musical" | "Poetry" => (&["Singing", "Golden", "Sweet", "Dancing", "Velvet", "Moonlit"], &["Melody", "Song", "Verses", "Serenade", "Rhythm", "Chorus"]),
        "Romance" => (&["Sweet", "Endless", "Secret", "Tender", "Summer", "Forbidden"], &["Love", "Kiss", "Heart", "Romance", "Affair", "Embrace"]),
        "Sci-Fi" | "Science Fiction" => (&["Galactic", "Quantum", "Cyber", "Alien", "Stellar", "Robotic"], &["Planet", "Starship", "Colony", "Android", "Nebula", "Orbit"]),
        "War" => (&["Burning", "Iron", "Bloody", "Forgotten", "Fallen", "Brave"], &["Battalion", "Front", "Trenches", "Siege", "Soldiers", "Beachhead"]),
        "Western" => (&["Dusty", "Lonesome", "Wild", "Outlaw", "Rattlesnake", "Silver"], &["Canyon", "Saloon", "Gunslinger", "Ranch", "Trail", "Sheriff"]),
        "Young Adult" => (&["Rebel", "Teenage", "Chosen", "Restless", "Burning", "First"], &["Academy", "Rebellion", "Summer", "Trials", "Crush", "Games"]),
        "Self-Help" | "Business" => (&["Better", "Smart", "Effective", "Lean", "Fearless", "Simple"], &["Habits", "Leadership", "Success", "Mindset", "Strategy", "Focus"]),
        "Cooking" => (&["Rustic", "Quick", "Spicy", "Homemade", "Seasonal", "Simple"], &["Kitchen", "Recipes", "Bakery", "Feast", "Flavours", "Suppers"]),
        _ => (&["Deep", "Open", "Examined", "Reasoned", "Eternal", "Inner"], &["Questions", "Mind", "Truth", "Meditations", "Ideas", "Wisdom"]),
    };
    Words { adjectives, nouns }
}

const FIRST_NAMES: [&str; 16] =
    ["Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Iris", "Jonas", "Kira", "Luca", "Mara", "Nils", "Olga", "Pavel"];
const LAST_NAMES: [&str; 16] = [
    "Abbott", "Brennan", "Castillo", "Dahl", "Eriksen", "Fontaine", "Garner", "Holm", "Ivers", "Jansen", "Keller", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov",
];
/// A few titles get a latin-1 accented word, so the loaders' encodings are exercised.
const ACCENTED: [&str; 4] = ["Café", "Élan", "Señor", "Noël"];

/// Generates a world. Deterministic for a seed.
pub fn generate(w: &WorldSettings, seed: u64) -> Result<RawData, DataError> {
    if w.users == 0 || w.items < 20 {
        return Err(DataError::Invalid { what: "a synthetic world needs at least 1 user and 20 items".into() });
    }
    if w.min_ratings < 2 || w.min_ratings > w.items {
        return Err(DataError::Invalid { what: format!("min_ratings must be 2..=items ({}), not {}", w.items, w.min_ratings) });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let movies = w.flavour == Flavour::Movies;
    let genres: Vec<&str> = if movies { GENRES.to_vec() } else { BOOK_GENRES.to_vec() };
    let g = genres.len();
    let mut raw = if movies {
        RawData::new("synthetic", Flavour::Movies, &["genre"])
    } else {
        RawData::new("synthetic", Flavour::Books, &["brand", "category"])
    };

    // Authors (books): each writes mostly in one genre.
    let n_authors = (w.items as usize / 8).clamp(4, 200);
    let authors: Vec<(String, usize)> = (0..n_authors)
        .map(|a| {
            let name = format!("{} {}", FIRST_NAMES[a % 16], LAST_NAMES[(a / 16 + a * 7) % 16]);
            let name = if a >= 256 { format!("{name} {}", a / 256 + 1) } else { name };
            (name, rng.random_range(0..g))
        })
        .collect();

    // Items: genre (and a secondary one), quality, popularity, a title that says the genre.
    struct ItemLatent {
        genre: usize,
        second: Option<usize>,
        author: usize,
        quality: f64,
        popularity: f64,
    }
    let mut latents = Vec::with_capacity(w.items as usize);
    let mut titles = HashSet::new();
    for i in 0..w.items as usize {
        let (genre, author) = if movies {
            (rng.random_range(0..g), 0)
        } else {
            let a = rng.random_range(0..n_authors);
            let genre = if rng.random_bool(0.8) { authors[a].1 } else { rng.random_range(0..g) };
            (genre, a)
        };
        let second = rng.random_bool(0.4).then(|| rng.random_range(0..g)).filter(|&s| s != genre);
        let quality = normal(&mut rng) * 0.5;
        // Zipf-like popularity by a random rank.
        let popularity = 1.0 / (1.0 + rng.random_range(0..w.items) as f64).powf(0.8);
        let wd = words(genres[genre]);
        let mut title;
        let mut attempt = 0;
        loop {
            let adj = wd.adjectives.choose(&mut rng).copied().unwrap_or("New");
            let noun = wd.nouns.choose(&mut rng).copied().unwrap_or("Story");
            title = match (attempt, i % 53) {
                (0, 0) => format!("{} {adj} {noun}", ACCENTED[(i / 53) % 4]),
                (0, _) => format!("The {adj} {noun}"),
                (1, _) => format!("{adj} {noun}"),
                _ => format!("{adj} {noun} {}", roman(attempt)),
            };
            if movies {
                title = format!("{title} ({})", 1950 + rng.random_range(0..51));
            }
            if titles.insert(title.clone()) {
                break;
            }
            attempt += 1;
        }
        let raw_id = if movies { (i + 1).to_string() } else { format!("B{:09}", 100_000 + i * 7) };
        let item = raw.items.intern(&raw_id);
        let attributes = if movies {
            vec![genres[genre].to_string()]
        } else {
            vec![authors[author].0.clone(), genres[genre].to_string()]
        };
        raw.item_meta.insert(item, ItemMeta { title, attributes });
        latents.push(ItemLatent { genre, second, author, quality, popularity });
    }

    // Users: tastes, demographics, activity.
    let start = Uniform::new(946_684_800i64, 1_041_379_200).map_err(|e| DataError::Invalid { what: e.to_string() })?; // 2000..2003
    for u in 0..w.users as usize {
        let raw_id = if movies { (u + 1).to_string() } else { format!("A{:08X}", 0x1000_0000 + u * 13) };
        let user = raw.users.intern(&raw_id);
        let mut weights: Vec<f64> = (0..g).map(|_| normal(&mut rng) * 0.3).collect();
        let mut shuffled: Vec<usize> = (0..g).collect();
        rand::seq::SliceRandom::shuffle(&mut shuffled[..], &mut rng);
        let n_likes = rng.random_range(2..=3);
        let n_dislikes = rng.random_range(1..=2);
        for (rank, &gi) in shuffled[..n_likes].iter().enumerate() {
            weights[gi] = 2.0 - 0.4 * rank as f64 + rng.random::<f64>() * 0.3;
        }
        for &gi in &shuffled[n_likes..n_likes + n_dislikes] {
            weights[gi] = -1.5 - rng.random::<f64>() * 0.5;
        }
        let favourite_authors: Vec<usize> = if movies {
            Vec::new()
        } else {
            let liked: Vec<usize> = (0..n_authors).filter(|&a| weights[authors[a].1] > 1.0).collect();
            liked.choose_multiple(&mut rng, 2).copied().collect()
        };
        let affinity = |it: &ItemLatent| {
            let mut a = weights[it.genre] + it.second.map(|s| 0.4 * weights[s]).unwrap_or(0.0);
            if favourite_authors.contains(&it.author) {
                a += 1.0;
            }
            a
        };
        // How many: min + a geometric tail with the requested mean.
        let extra_mean = (w.ratings_per_user.saturating_sub(w.min_ratings)) as f64;
        let extra = if extra_mean > 0.0 { (-(rng.random::<f64>().max(1e-12)).ln() * extra_mean) as u32 } else { 0 };
        let n = (w.min_ratings + extra).min(w.items);
        // Exposure: popularity x exp(taste_exposure * affinity), without replacement
        // (Efraimidis-Spirakis keys).
        let mut keys: Vec<(f64, usize)> = latents
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let weight = it.popularity * (w.taste_exposure * affinity(it)).exp();
                let key = rng.random::<f64>().max(1e-300).ln() / weight;
                (key, i)
            })
            .collect();
        keys.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut t = start.sample(&mut rng);
        for &(_, i) in keys.iter().take(n as usize) {
            let latent = 2.75 + 0.9 * affinity(&latents[i]) + latents[i].quality + normal(&mut rng) * w.noise;
            let stars = latent.round().clamp(1.0, 5.0) as f32;
            t += (-(rng.random::<f64>().max(1e-12)).ln() * 86_400.0 * 3.0) as i64 + 1;
            // Items were interned in order, so item index i is item i.
            raw.ratings.push(Rating { user, item: i as u32, rating: stars, timestamp: t });
        }
        if movies {
            raw.demographics.insert(
                user,
                Demographics {
                    gender: Some(if rng.random_bool(0.5) { "F" } else { "M" }.to_string()),
                    age: Some(*ML1M_AGES.choose(&mut rng).unwrap_or(&25)),
                    occupation: Some(super::movielens::ML1M_OCCUPATIONS[rng.random_range(0..21)].to_string()),
                },
            );
        }
        let mut order: Vec<usize> = (0..g).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
        let truth = Truth {
            likes: order[..n_likes].iter().map(|&i| genres[i].to_string()).collect(),
            dislikes: order.iter().rev().take(n_dislikes).map(|&i| genres[i].to_string()).collect(),
            favourite_authors: favourite_authors.iter().map(|&a| authors[a].0.clone()).collect(),
            weights: (0..g).map(|i| (genres[i].to_string(), (weights[i] * 1000.0).round() / 1000.0)).collect(),
        };
        raw.truth.insert(user, serde_json::to_string(&truth).unwrap_or_default());
    }
    // Real datasets list ratings roughly by time across users; interleave the same way.
    raw.ratings.sort_by_key(|r| r.timestamp);
    raw.skipped.clear();
    Ok(raw)
}

fn roman(n: usize) -> String {
    ["II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"].get(n.saturating_sub(2)).map(|s| s.to_string()).unwrap_or_else(|| n.to_string())
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::{preprocess, Settings, Split};
    use crate::metrics::{rank_by_scores, Accumulator};

    /// NDCG@5 over test lists when each candidate is scored by `score(user truth, genre)`.
    fn ndcg5(flavour: Flavour, score: impl Fn(&Truth, &str) -> f64) -> f64 {
        let mut w = WorldSettings::new(flavour);
        w.users = 600;
        w.items = 500;
        let d = preprocess(generate(&w, 5).unwrap(), &Settings::kar_defaults("synthetic", flavour), 5).unwrap();
        let genre_field = if flavour == Flavour::Movies { 0 } else { 1 };
        let mut acc = Accumulator::new(&[5]);
        for l in d.lists.iter().filter(|l| l.split == Split::Test) {
            let truth: Truth = serde_json::from_str(d.user(l.user).unwrap().truth.as_deref().unwrap()).unwrap();
            let scores: Vec<f32> = l
                .candidates
                .iter()
                .map(|&c| score(&truth, &d.item(c).unwrap().attributes[genre_field]) as f32)
                .collect();
            let labels: Vec<u8> = l.labels.iter().map(|&x| x as u8).collect();
            acc.add(l.user as i64, &labels, &rank_by_scores(&scores));
        }
        acc.means()[0].ndcg
    }

    fn weight(t: &Truth, genre: &str) -> f64 {
        t.weights.iter().find(|(g, _)| g == genre).map(|(_, w)| *w).unwrap_or(0.0)
    }

    #[test]
    fn stated_tastes_help_ranking_and_accuracy_helps_more() {
        for flavour in [Flavour::Movies, Flavour::Books] {
            let none = ndcg5(flavour, |_, _| 0.0);
            // What a statement of likes and dislikes gives: +1 liked, -1 disliked.
            let stated = ndcg5(flavour, |t, g| {
                if t.likes.iter().any(|x| x == g) {
                    1.0
                } else if t.dislikes.iter().any(|x| x == g) {
                    -1.0
                } else {
                    0.0
                }
            });
            // A vaguer statement: only the single strongest like.
            let vague = ndcg5(flavour, |t, g| if t.likes.first().is_some_and(|x| x == g) { 1.0 } else { 0.0 });
            // The exact weights (a perfect statement).
            let exact = ndcg5(flavour, weight);
            assert!(stated > none + 0.05, "{flavour:?}: stated tastes {stated:.3} vs none {none:.3}");
            assert!(stated > vague + 0.05, "{flavour:?}: full statement {stated:.3} vs vague {vague:.3}");
            assert!(exact > stated, "{flavour:?}: exact weights {exact:.3} vs statement {stated:.3}");
        }
    }

    #[test]
    fn the_world_is_deterministic_and_sized() {
        let w = WorldSettings::new(Flavour::Books);
        let a = generate(&w, 9).unwrap();
        let b = generate(&w, 9).unwrap();
        assert_eq!(a.ratings, b.ratings);
        assert_eq!(a.users.len(), 300);
        assert_eq!(a.items.len(), 400);
        assert!(a.ratings.len() >= 300 * 20);
        assert_eq!(a.truth.len(), 300);
        let mut bad = w.clone();
        bad.items = 5;
        assert!(generate(&bad, 1).is_err());
    }
}
