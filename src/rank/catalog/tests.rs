use super::*;

pub(crate) fn item(id: &str, path: &str, brand: Option<&str>) -> Item {
    let category = if path.is_empty() { vec![] } else { path.split('/').map(String::from).collect() };
    Item { brand: brand.map(String::from), ..Item::new(id, category) }
}

fn ids(c: &Catalog, list: &[ItemIdx]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|&i| c.id(i).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn items_are_found_by_id_by_every_category_prefix_and_by_brand() {
    let c = Catalog::from_items([
        item("p1", "electronics/phones/android", Some("acme")),
        item("p2", "electronics/phones/ios", Some("fruit")),
        item("t1", "electronics/tv", Some("acme")),
        item("b1", "books", None),
    ]);
    assert_eq!(c.get("p1").unwrap().brand.as_deref(), Some("acme"));
    let root = c.category_idx("electronics").unwrap();
    assert_eq!(ids(&c, c.items_in_category(root)), ["p1", "p2", "t1"]);
    assert_eq!(ids(&c, c.items_in_category(c.category_idx("electronics/phones").unwrap())), ["p1", "p2"]);
    assert_eq!(ids(&c, c.items_of_brand(c.brand_idx("acme").unwrap())), ["p1", "t1"]);
    let p1 = c.idx("p1").unwrap();
    let path: Vec<&str> = c.categories(p1).iter().map(|&k| c.category_name(k)).collect();
    assert_eq!(path, ["electronics", "electronics/phones", "electronics/phones/android"]);
    let leaf = c.leaf_category(p1).unwrap();
    assert_eq!(c.category_depth(leaf), 3);
    assert_eq!(c.category_path(leaf), c.categories(p1));
    assert_eq!(c.category_parent(root), None);
    assert_eq!(c.known_items(), 4);
    assert!(c.get("nope").is_none());
}

#[test]
fn upsert_moves_an_item_between_categories_and_brands_without_duplicates() {
    let mut c = Catalog::from_items([item("x", "a/b", Some("acme"))]);
    let x = c.idx("x").unwrap();
    c.upsert(item("x", "a/c", Some("other")));
    c.upsert(item("x", "a/c", Some("other")));
    assert_eq!(c.idx("x"), Some(x), "the index is stable");
    assert!(c.items_in_category(c.category_idx("a/b").unwrap()).is_empty());
    assert_eq!(c.items_in_category(c.category_idx("a").unwrap()), [x]);
    assert_eq!(c.items_in_category(c.category_idx("a/c").unwrap()), [x]);
    assert!(c.items_of_brand(c.brand_idx("acme").unwrap()).is_empty());
    assert_eq!(c.items_of_brand(c.brand_idx("other").unwrap()), [x]);
    assert_eq!(c.known_items(), 1);
}

#[test]
fn placeholders_from_events_are_never_available_until_the_catalogue_sends_them() {
    let mut c = Catalog::new();
    let x = c.intern("x");
    assert!(!c.is_available(x));
    assert!(c.item(x).is_none() && c.categories(x).is_empty());
    assert_eq!(c.known_items(), 0);
    assert_eq!(c.upsert(item("x", "a", None)), x);
    assert!(c.is_available(x));
    c.set_available(x, false);
    assert!(!c.is_available(x));
    assert_eq!(c.available_items(), 0);
    let mut gone = item("x", "a", None);
    gone.available = false;
    c.upsert(gone);
    assert_eq!((c.known_items(), c.available_items()), (1, 0));
}

#[test]
fn fx_maps_behave_like_maps() {
    let mut m: IdxMap<ItemIdx, u32> = IdxMap::default();
    for i in 0..1000 {
        *m.entry(ItemIdx(i % 100)).or_default() += 1;
    }
    assert_eq!(m.len(), 100);
    assert!(m.values().all(|&v| v == 10));
}
