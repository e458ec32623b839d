//! The EmoNet taxonomy: the 40 emotion categories in canonical order, their synonyms and their seven families.
//! The order is part of the public API and of the model format (column `i` of every head is `Category::ALL[i]`),
//! so it is generated from the published taxonomy JSON by `scripts/gen_taxonomy.py` and checked against it in
//! the tests.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Version of the taxonomy this crate is built on; recorded in every model's `emoarc.json`.
pub const TAXONOMY_VERSION: &str = "emonet-40-v1";

/// The number of categories.
pub const NUM_CATEGORIES: usize = 40;

/// The seven families the taxonomy groups categories into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// "Positive High-Energy": amusement, elation, pleasure/ecstasy, hope, triumph, interest, awe, surprise,
    /// teasing (9).
    PositiveHighEnergy,
    /// "Positive Low-Energy": contentment, gratitude, affection, pride, contemplation, relief (6).
    PositiveLowEnergy,
    /// "Negative High-Energy": irritability, fear, distress, disgust, anger, malice (6).
    NegativeHighEnergy,
    /// "Negative Low-Energy": doubt, embarrassment, shame, disappointment, sadness, bitterness, contempt,
    /// helplessness, emotional numbness, jealousy & envy (10).
    NegativeLowEnergy,
    /// "Cognitive States and Processes": concentration, confusion (2).
    Cognitive,
    /// "Physical and Exhaustive States": sourness, pain, fatigue/exhaustion, intoxication/altered states (4).
    PhysicalExhaustive,
    /// "Longing & Lust": infatuation, longing, sexual lust (3).
    LongingLust,
}

impl Family {
    /// The seven families in the taxonomy's order (the order of the variants, and of [`Ord`]).
    pub const ALL: [Family; 7] = [
        Family::PositiveHighEnergy,
        Family::PositiveLowEnergy,
        Family::NegativeHighEnergy,
        Family::NegativeLowEnergy,
        Family::Cognitive,
        Family::PhysicalExhaustive,
        Family::LongingLust,
    ];

    /// The family's name as the taxonomy spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Family::PositiveHighEnergy => "Positive High-Energy",
            Family::PositiveLowEnergy => "Positive Low-Energy",
            Family::NegativeHighEnergy => "Negative High-Energy",
            Family::NegativeLowEnergy => "Negative Low-Energy",
            Family::Cognitive => "Cognitive States and Processes",
            Family::PhysicalExhaustive => "Physical and Exhaustive States",
            Family::LongingLust => "Longing & Lust",
        }
    }

    /// The categories of this family, in canonical order.
    pub fn categories(self) -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(move |c| c.family() == self)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! define_categories {
    ($($variant:ident = $idx:literal, $name:literal, $family:ident, [$($syn:literal),* $(,)?];)*) => {
        /// One of the 40 EmoNet categories. The discriminant is the canonical index.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Category {
            $(#[doc = $name] $variant = $idx,)*
        }

        impl Category {
            /// All categories in canonical order.
            pub const ALL: [Category; NUM_CATEGORIES] = [$(Category::$variant,)*];

            /// The category's name exactly as the taxonomy spells it (the key used in JSON and CSV).
            pub const fn name(self) -> &'static str {
                match self { $(Category::$variant => $name,)* }
            }

            /// The family the taxonomy puts this category in.
            pub const fn family(self) -> Family {
                match self { $(Category::$variant => Family::$family,)* }
            }

            /// The synonyms the taxonomy lists for this category.
            pub const fn synonyms(self) -> &'static [&'static str] {
                match self { $(Category::$variant => &[$($syn),*],)* }
            }
        }
    };
}

include!("taxonomy_table.rs");

impl Category {
    /// The canonical index, `0..40`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The category at a canonical index.
    pub fn from_index(index: usize) -> Option<Category> {
        Category::ALL.get(index).copied()
    }

    /// Looks a category up by its name, ignoring case and surrounding white space
    /// (`"anger"`, `"Thankfulness/Gratitude"`). Synonyms are not accepted: several are shared between categories.
    pub fn from_name(name: &str) -> Option<Category> {
        let name = name.trim();
        Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Category::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown category {name:?}")))
    }
}

impl std::str::FromStr for Category {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Category::from_name(s).ok_or_else(|| crate::Error::Config(format!("unknown category {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_canonical_and_names_round_trip() {
        for (i, c) in Category::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Category::from_index(i), Some(c));
            assert_eq!(Category::from_name(c.name()), Some(c));
            assert_eq!(Category::from_name(&c.name().to_uppercase()), Some(c));
        }
        assert_eq!(Category::from_name("not an emotion"), None);
        assert_eq!(Category::from_index(40), None);
    }

    #[test]
    fn families_partition_the_categories() {
        let total: usize = Family::ALL.iter().map(|f| f.categories().count()).sum();
        assert_eq!(total, NUM_CATEGORIES);
        assert_eq!(Family::NegativeLowEnergy.categories().count(), 10);
        assert_eq!(Category::Anger.family(), Family::NegativeHighEnergy);
    }
}

#[cfg(test)]
mod published {
    use super::*;

    /// The generated table must equal the published taxonomy: names, order, families and synonyms.
    #[test]
    fn matches_the_published_taxonomy_json() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let copy = std::fs::read_to_string(root.join("data/emonet-taxonomy.json")).unwrap();
        // Where the shared original is beside the checkout, the copy must not have drifted from it.
        if let Ok(shared) = std::fs::read_to_string(root.join("../shared/emonet-taxonomy.json")) {
            assert_eq!(copy, shared, "data/emonet-taxonomy.json differs from ../shared");
        }
        let json: serde_json::Value = serde_json::from_str(&copy).unwrap();
        let cats = json["categories"].as_array().unwrap();
        assert_eq!(cats.len(), NUM_CATEGORIES);
        for (c, j) in Category::ALL.iter().zip(cats) {
            assert_eq!(j["index"].as_u64().unwrap() as usize, c.index());
            assert_eq!(j["name"].as_str().unwrap(), c.name());
            assert_eq!(j["family"].as_str().unwrap(), c.family().name());
            let syn: Vec<&str> = j["synonyms"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            assert_eq!(syn, c.synonyms());
        }
    }
}
