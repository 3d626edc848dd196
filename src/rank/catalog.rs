// Over 400 lines: every interned name (items, categories, brands, event kinds) and the indexes `upsert` keeps consistent.
//! In-memory catalog index: items by id, by category (every ancestor prefix) and by brand.
//!
//! Every item id, category path and brand is interned once into a dense `u32` index
//! ([`ItemIdx`], [`CatIdx`], [`BrandIdx`]); the pure recommendation code (`profile`, `stats`,
//! `scoring`) works on those indices, so a request hashes small integers, never strings.
//! Indices are stable for the life of a `Catalog`: an item that leaves the catalogue stays
//! interned (and is simply unavailable), so statistics keyed by index never dangle.
//!
//! An event may name an item the catalogue has not seen yet (the item feed lags behind the
//! event feed): [`Catalog::intern`] gives it a placeholder index with no data; a later
//! [`Catalog::upsert`] fills it in. Placeholders are never recommended.
//!
//! The service holds the catalog behind a lock and calls `upsert` on `PUT /v1/items`; the
//! offline evaluation builds one as it replays the log.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::Item;

/// Dense index of an item id in a [`Catalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemIdx(pub u32);

/// Dense index of a category path (`a`, `a/b`, ...) in a [`Catalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CatIdx(pub u32);

/// Dense index of a brand in a [`Catalog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrandIdx(pub u32);

/// Dense index of an event kind's name in a [`Catalog`] (a packed history names its events'
/// kinds by it). At most 255 names are interned; any further one reads as [`KindIdx::OTHER`],
/// a kind with no name and no weight (kinds are a handful of configured names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindIdx(pub u8);

impl KindIdx {
    pub const OTHER: KindIdx = KindIdx(u8::MAX);
}

/// A `HashMap` keyed by the internal indices above: foldhash with a fixed seed (fast on
/// small integers, and the same iteration order on every run). Never for keys that come
/// from outside.
pub type IdxMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
/// A `HashSet` of internal indices, see [`IdxMap`].
pub type IdxSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;
/// A `HashMap` keyed by strings from outside (item ids, category paths, brands, event
/// kinds): foldhash seeded per process, so crafted keys cannot force collisions.
pub type StrMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One interned item: its id, and (once the catalogue has sent it) its data.
#[derive(Debug, Clone)]
struct Entry {
    id: Arc<str>,
    item: Option<Arc<Item>>,
    /// Every ancestor of the item's category, root first (`a`, `a/b`, `a/b/c`).
    categories: Box<[CatIdx]>,
    brand: Option<BrandIdx>,
    /// `item.available`, kept here too: ranking checks it for every candidate.
    available: bool,
}

/// Interned category paths with their tree structure.
#[derive(Debug, Clone, Default)]
struct Categories {
    names: Vec<Arc<str>>,
    by_name: StrMap<Arc<str>, CatIdx>,
    parent: Vec<Option<CatIdx>>,
    depth: Vec<u16>,
    /// Items whose category path has this category as a prefix.
    items: Vec<Vec<ItemIdx>>,
}

/// Interned brands.
#[derive(Debug, Clone, Default)]
struct Brands {
    names: Vec<Arc<str>>,
    by_name: StrMap<Arc<str>, BrandIdx>,
    items: Vec<Vec<ItemIdx>>,
}

/// The catalog index. Cheap to query (`O(1)` lookups, slices for category and brand members);
/// `upsert` is `O(path length)` plus, when an item changes category or brand, the size of the
/// lists it leaves.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    by_id: StrMap<Arc<str>, ItemIdx>,
    cats: Categories,
    brands: Brands,
    /// Event kind names, by [`KindIdx`].
    kinds: Vec<Box<str>>,
    kind_by_name: StrMap<Box<str>, KindIdx>,
    /// Number of entries that have data (not placeholders).
    known: usize,
    available: usize,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// A catalog holding `items` (later duplicates replace earlier ones).
    pub fn from_items(items: impl IntoIterator<Item = Item>) -> Self {
        let mut c = Self::new();
        for item in items {
            c.upsert(item);
        }
        c
    }

    /// Inserts or replaces an item, keeping every index consistent; returns its index.
    pub fn upsert(&mut self, item: Item) -> ItemIdx {
        let idx = self.intern(&item.item_id);
        let cats = self.intern_path(&item.category);
        let brand = item.brand.as_deref().map(|b| self.intern_brand(b));
        let entry = &self.entries[idx.0 as usize];
        let (old_cats, old_brand) = (entry.categories.clone(), entry.brand);
        let was_known = entry.item.is_some();
        let was_available = entry.item.as_ref().is_some_and(|i| i.available);

        if *old_cats != *cats {
            for c in old_cats.iter() {
                self.cats.items[c.0 as usize].retain(|&i| i != idx);
            }
            for c in cats.iter() {
                self.cats.items[c.0 as usize].push(idx);
            }
        }
        if old_brand != brand {
            if let Some(b) = old_brand {
                self.brands.items[b.0 as usize].retain(|&i| i != idx);
            }
            if let Some(b) = brand {
                self.brands.items[b.0 as usize].push(idx);
            }
        }
        self.known += usize::from(!was_known);
        self.available = self.available + usize::from(item.available) - usize::from(was_available);
        let entry = &mut self.entries[idx.0 as usize];
        entry.categories = cats;
        entry.brand = brand;
        entry.available = item.available;
        entry.item = Some(Arc::new(item));
        idx
    }

    /// The index of `id`, creating a placeholder (no data, never recommended) if it is new.
    /// Used for events whose item the catalogue has not sent yet.
    pub fn intern(&mut self, id: &str) -> ItemIdx {
        if let Some(&idx) = self.by_id.get(id) {
            return idx;
        }
        let idx = ItemIdx(u32::try_from(self.entries.len()).expect("more than 2^32 items"));
        let id: Arc<str> = Arc::from(id);
        self.by_id.insert(id.clone(), idx);
        self.entries.push(Entry { id, item: None, categories: Box::new([]), brand: None, available: false });
        idx
    }

    /// The index of an event kind's name, interning it if it is new ([`KindIdx::OTHER`] once
    /// 255 names are held).
    pub fn intern_kind(&mut self, name: &str) -> KindIdx {
        if let Some(&k) = self.kind_by_name.get(name) {
            return k;
        }
        let Some(k) = u8::try_from(self.kinds.len()).ok().filter(|&n| n < u8::MAX).map(KindIdx) else { return KindIdx::OTHER };
        self.kinds.push(name.into());
        self.kind_by_name.insert(name.into(), k);
        k
    }

    /// The index of an event kind's name, if interned.
    #[inline]
    pub fn kind_idx(&self, name: &str) -> Option<KindIdx> {
        self.kind_by_name.get(name).copied()
    }

    /// The name of an interned event kind (empty for [`KindIdx::OTHER`]).
    #[inline]
    pub fn kind_name(&self, k: KindIdx) -> &str {
        self.kinds.get(usize::from(k.0)).map_or("", |n| n)
    }

    /// Marks an item unavailable (it stays interned; it is no longer recommended).
    pub fn set_available(&mut self, idx: ItemIdx, available: bool) {
        if let Some(entry) = self.entries.get_mut(idx.0 as usize)
            && let Some(item) = entry.item.as_mut()
            && item.available != available
        {
            Arc::make_mut(item).available = available;
            entry.available = available;
            if available {
                self.available += 1;
            } else {
                self.available -= 1;
            }
        }
    }

    /// The index of an item id, if interned.
    #[inline]
    pub fn idx(&self, id: &str) -> Option<ItemIdx> {
        self.by_id.get(id).copied()
    }

    /// The item with this id, if the catalogue has sent it.
    pub fn get(&self, id: &str) -> Option<&Item> {
        self.idx(id).and_then(|i| self.item(i))
    }

    /// The item at this index, if the catalogue has sent it.
    #[inline]
    pub fn item(&self, idx: ItemIdx) -> Option<&Item> {
        self.entries.get(idx.0 as usize)?.item.as_deref()
    }

    /// The id of the item at this index.
    ///
    /// # Panics
    /// If `idx` does not come from this catalog.
    #[inline]
    pub fn id(&self, idx: ItemIdx) -> &str {
        &self.entries[idx.0 as usize].id
    }

    /// The shared id of the item at this index.
    #[inline]
    pub fn id_arc(&self, idx: ItemIdx) -> &Arc<str> {
        &self.entries[idx.0 as usize].id
    }

    /// Every ancestor category of the item, root first (empty for placeholders and
    /// uncategorised items).
    #[inline]
    pub fn categories(&self, idx: ItemIdx) -> &[CatIdx] {
        self.entries.get(idx.0 as usize).map_or(&[], |e| &e.categories)
    }

    /// The item's most specific category.
    #[inline]
    pub fn leaf_category(&self, idx: ItemIdx) -> Option<CatIdx> {
        self.categories(idx).last().copied()
    }

    /// The item's brand.
    #[inline]
    pub fn brand(&self, idx: ItemIdx) -> Option<BrandIdx> {
        self.entries.get(idx.0 as usize).and_then(|e| e.brand)
    }

    /// Whether the item is known to the catalogue and available for sale.
    #[inline]
    pub fn is_available(&self, idx: ItemIdx) -> bool {
        self.entries.get(idx.0 as usize).is_some_and(|e| e.available)
    }

    /// The index of a category path (`a/b`), if interned.
    pub fn category_idx(&self, path: &str) -> Option<CatIdx> {
        self.cats.by_name.get(path).copied()
    }

    /// The path of a category (`a/b`).
    #[inline]
    pub fn category_name(&self, cat: CatIdx) -> &str {
        &self.cats.names[cat.0 as usize]
    }

    /// The parent category (`a` for `a/b`), `None` for a root.
    #[inline]
    pub fn category_parent(&self, cat: CatIdx) -> Option<CatIdx> {
        self.cats.parent[cat.0 as usize]
    }

    /// Depth of a category: 1 for a root.
    #[inline]
    pub fn category_depth(&self, cat: CatIdx) -> u16 {
        self.cats.depth[cat.0 as usize]
    }

    /// The category and its ancestors, root first.
    pub fn category_path(&self, cat: CatIdx) -> Vec<CatIdx> {
        let mut path = vec![cat];
        let mut c = cat;
        while let Some(p) = self.category_parent(c) {
            path.push(p);
            c = p;
        }
        path.reverse();
        path
    }

    /// Items whose category path has `cat` as a prefix (so a root lists its whole subtree),
    /// placeholders excluded, in insertion order.
    #[inline]
    pub fn items_in_category(&self, cat: CatIdx) -> &[ItemIdx] {
        self.cats.items.get(cat.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// The index of a brand, if interned.
    pub fn brand_idx(&self, brand: &str) -> Option<BrandIdx> {
        self.brands.by_name.get(brand).copied()
    }

    /// The name of a brand.
    #[inline]
    pub fn brand_name(&self, brand: BrandIdx) -> &str {
        &self.brands.names[brand.0 as usize]
    }

    /// Items of a brand, in insertion order.
    #[inline]
    pub fn items_of_brand(&self, brand: BrandIdx) -> &[ItemIdx] {
        self.brands.items.get(brand.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// Number of interned item ids (placeholders included); every `ItemIdx` is below this.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of items the catalogue has sent (placeholders excluded).
    pub fn known_items(&self) -> usize {
        self.known
    }

    /// Number of items available for sale.
    pub fn available_items(&self) -> usize {
        self.available
    }

    /// Number of interned categories (every `CatIdx` is below this).
    pub fn category_count(&self) -> usize {
        self.cats.names.len()
    }

    /// Number of interned brands.
    pub fn brand_count(&self) -> usize {
        self.brands.names.len()
    }

    /// Every item the catalogue has sent, with its index.
    pub fn iter(&self) -> impl Iterator<Item = (ItemIdx, &Item)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.item.as_deref().map(|item| (ItemIdx(i as u32), item)))
    }

    /// Interns every prefix of a category path, returning them root first.
    fn intern_path(&mut self, path: &[String]) -> Box<[CatIdx]> {
        let mut out = Vec::with_capacity(path.len());
        let mut name = String::new();
        let mut parent = None;
        for (depth, part) in path.iter().enumerate() {
            if depth > 0 {
                name.push('/');
            }
            name.push_str(part);
            let idx = match self.cats.by_name.get(name.as_str()) {
                Some(&idx) => idx,
                None => {
                    let idx = CatIdx(u32::try_from(self.cats.names.len()).expect("more than 2^32 categories"));
                    let arc: Arc<str> = Arc::from(name.as_str());
                    self.cats.by_name.insert(arc.clone(), idx);
                    self.cats.names.push(arc);
                    self.cats.parent.push(parent);
                    self.cats.depth.push(u16::try_from(depth + 1).unwrap_or(u16::MAX));
                    self.cats.items.push(Vec::new());
                    idx
                }
            };
            out.push(idx);
            parent = Some(idx);
        }
        out.into_boxed_slice()
    }

    fn intern_brand(&mut self, brand: &str) -> BrandIdx {
        if let Some(&idx) = self.brands.by_name.get(brand) {
            return idx;
        }
        let idx = BrandIdx(u32::try_from(self.brands.names.len()).expect("more than 2^32 brands"));
        let arc: Arc<str> = Arc::from(brand);
        self.brands.by_name.insert(arc.clone(), idx);
        self.brands.names.push(arc);
        self.brands.items.push(Vec::new());
        idx
    }
}

#[cfg(test)]
pub(crate) mod tests;
