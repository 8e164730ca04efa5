//! The PDF invoice: the same facts as the HTML one, laid out on A4 pages in code, with a
//! TrueType font embedded as a subset (only the glyphs used) so that any name the font covers
//! prints, Cyrillic included. The shipped font is DejaVu Sans (`assets/fonts`, license beside
//! it); an `invoice-font.ttf` in the templates folder replaces it (e.g. for CJK names). Text is
//! written as glyph ids with a `ToUnicode` map, so that text extraction and search work.

use super::{Invoice, Templates};
use crate::error::{FuncError, FuncResult};
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use std::collections::BTreeMap;

/// The shipped font.
pub const DEFAULT_FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const FONT_NAME: Name<'static> = Name(b"F1");

/// Renders `invoice` as a PDF document.
pub fn render(invoice: &Invoice, templates: &Templates) -> FuncResult<Vec<u8>> {
    match templates.file("invoice-font.ttf") {
        Some(path) => {
            let font = super::read_operator_file(&path)?;
            render_with_font(invoice, &font)
                .map_err(|e| FuncError::internal(format!("{}: {e}", path.display())))
        }
        None => render_with_font(invoice, DEFAULT_FONT).map_err(FuncError::internal),
    }
}

/// The font as the layout needs it: glyphs, advances, and which glyphs the document used.
struct Font<'a> {
    face: ttf_parser::Face<'a>,
    /// 1000 / units per em: glyph space to PDF text space.
    scale: f32,
    remapper: subsetter::GlyphRemapper,
    /// New glyph id → the character it shows (for `ToUnicode`) and its width.
    used: BTreeMap<u16, (char, f32)>,
}

impl Font<'_> {
    fn advance(&self, c: char) -> f32 {
        let gid = self.face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
        f32::from(self.face.glyph_hor_advance(gid).unwrap_or(0)) * self.scale
    }

    /// The width of `text` at `size` points.
    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.advance(c)).sum::<f32>() * size / 1000.0
    }

    /// `text` as two-byte glyph ids of the subset (which the PDF uses as CIDs).
    fn encode(&mut self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let gid = self.face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
            let new = self.remapper.remap(gid.0);
            let width = self.advance(c);
            self.used.entry(new).or_insert((c, width));
            out.extend_from_slice(&new.to_be_bytes());
        }
        out
    }
}

/// Pages of text being laid out top to bottom.
struct Layout<'a> {
    font: Font<'a>,
    pages: Vec<Content>,
    y: f32,
}

impl Layout<'_> {
    fn page(&mut self) -> &mut Content {
        if self.pages.is_empty() {
            self.pages.push(Content::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = PAGE_H - MARGIN;
    }

    /// Moves down by `height`, starting a new page when the bottom margin is reached.
    fn advance(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.new_page();
        }
        self.y -= height;
    }

    fn text_at(&mut self, x: f32, y: f32, size: f32, text: &str) {
        let encoded = self.font.encode(text);
        let content = self.page();
        content
            .begin_text()
            .set_font(FONT_NAME, size)
            .next_line(x, y)
            .show(Str(&encoded))
            .end_text();
    }

    /// A line of text at `x` on a new row.
    fn line(&mut self, x: f32, size: f32, text: &str) {
        self.advance(size * 1.4);
        let y = self.y;
        self.text_at(x, y, size, text);
    }

    /// Text ending at `right` on the current row.
    fn right(&mut self, right: f32, size: f32, text: &str) {
        let x = right - self.font.width(text, size);
        let y = self.y;
        self.text_at(x, y, size, text);
    }

    /// Splits `text` into lines no wider than `width` (at word boundaries when it can).
    fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split(' ') {
                let candidate = if line.is_empty() {
                    word.to_string()
                } else {
                    format!("{line} {word}")
                };
                if self.font.width(&candidate, size) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // A word longer than the line is cut.
                for c in word.chars() {
                    if !line.is_empty() && self.font.width(&format!("{line}{c}"), size) > width {
                        lines.push(std::mem::take(&mut line));
                    }
                    line.push(c);
                }
            }
            lines.push(line);
        }
        lines
    }

    fn rule(&mut self) {
        self.advance(8.0);
        let y = self.y + 4.0;
        self.page()
            .set_line_width(0.5)
            .move_to(MARGIN, y)
            .line_to(PAGE_W - MARGIN, y)
            .stroke();
    }
}

fn render_with_font(invoice: &Invoice, font_data: &[u8]) -> Result<Vec<u8>, String> {
    let face = ttf_parser::Face::parse(font_data, 0).map_err(|e| format!("not a font: {e}"))?;
    let scale = 1000.0 / f32::from(face.units_per_em());
    let mut remapper = subsetter::GlyphRemapper::new();
    remapper.remap(0);
    let mut l = Layout {
        font: Font {
            face,
            scale,
            remapper,
            used: BTreeMap::new(),
        },
        pages: Vec::new(),
        y: PAGE_H - MARGIN,
    };
    let right = PAGE_W - MARGIN;
    let cur = &invoice.currency;

    l.line(MARGIN, 18.0, &format!("Invoice {}", invoice.number));
    let dates = if invoice.paid {
        format!("Date: {}   Paid: {}", invoice.date, invoice.paydate)
    } else {
        format!("Date: {}   Status: {}", invoice.date, invoice.status)
    };
    l.line(MARGIN, 10.0, &dates);
    l.advance(10.0);

    // The two parties side by side.
    let mut from = vec![invoice.provider.name.clone()];
    from.extend(
        invoice
            .provider
            .address
            .lines()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string),
    );
    if !invoice.provider.taxid.is_empty() {
        from.push(format!("Tax ID: {}", invoice.provider.taxid));
    }
    let to: Vec<String> = [
        &invoice.payer.name,
        &invoice.payer.email,
        &invoice.payer.country,
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .cloned()
    .collect();
    let half = (PAGE_W - 2.0 * MARGIN) / 2.0;
    let column = |l: &Layout, lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .flat_map(|s| l.wrap(s, 10.0, half - 10.0))
            .collect()
    };
    let (from, to) = (column(&l, &from), column(&l, &to));
    l.advance(14.0);
    let y = l.y;
    l.text_at(MARGIN, y, 9.0, "FROM");
    l.text_at(MARGIN + half, y, 9.0, "BILL TO");
    for i in 0..from.len().max(to.len()) {
        l.advance(14.0);
        let y = l.y;
        if let Some(s) = from.get(i) {
            l.text_at(MARGIN, y, 10.0, s);
        }
        if let Some(s) = to.get(i) {
            l.text_at(MARGIN + half, y, 10.0, s);
        }
    }
    l.advance(16.0);

    // The lines.
    let desc_x = MARGIN + 30.0;
    let desc_w = right - 110.0 - desc_x;
    l.advance(14.0);
    let y = l.y;
    l.text_at(MARGIN, y, 10.0, "#");
    l.text_at(desc_x, y, 10.0, "Description");
    l.right(right, 10.0, &format!("Amount, {cur}"));
    l.rule();
    for line in &invoice.lines {
        let wrapped = l.wrap(&line.description, 10.0, desc_w);
        for (i, text) in wrapped.iter().enumerate() {
            l.advance(14.0);
            let y = l.y;
            if i == 0 {
                l.text_at(MARGIN, y, 10.0, &line.number.to_string());
                l.right(right, 10.0, &line.amount);
            }
            l.text_at(desc_x, y, 10.0, text);
        }
    }
    l.rule();
    let mut totals = vec![
        ("Net", format!("{} {cur}", invoice.net), 10.0),
        ("Tax included", format!("{} {cur}", invoice.tax), 10.0),
        ("Total", format!("{} {cur}", invoice.total), 12.0),
    ];
    if !invoice.payable.is_empty() {
        totals.push(("Payable", invoice.payable.clone(), 10.0));
    }
    for (label, amount, size) in totals {
        l.advance(size * 1.5);
        let label_right = right - 120.0;
        l.right(label_right, size, label);
        l.right(right, size, &amount);
    }

    finish(l, &format!("Invoice {}", invoice.number), font_data)
}

/// Writes the pages, the subset font and its maps into one PDF file.
fn finish(l: Layout, title: &str, font_data: &[u8]) -> Result<Vec<u8>, String> {
    let mut next = 1;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let catalog = alloc();
    let tree = alloc();
    let info = alloc();
    let type0 = alloc();
    let cid = alloc();
    let descriptor = alloc();
    let file = alloc();
    let cmap = alloc();
    let pages: Vec<(Ref, Ref)> = l.pages.iter().map(|_| (alloc(), alloc())).collect();

    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(pages.iter().map(|(p, _)| *p))
        .count(pages.len() as i32);
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("billhost"));
    for ((page, content_ref), content) in pages.iter().zip(l.pages) {
        let mut p = pdf.page(*page);
        p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        p.parent(tree);
        p.contents(*content_ref);
        p.resources().fonts().pair(FONT_NAME, type0);
        p.finish();
        pdf.stream(*content_ref, &content.finish());
    }

    let font = l.font;
    let base = font_base_name(&font.face);
    let base_name = Name(base.as_bytes());
    let system = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    pdf.type0_font(type0)
        .base_font(base_name)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid)
        .to_unicode(cmap);
    let mut cid_font = pdf.cid_font(cid);
    cid_font
        .subtype(CidFontType::Type2)
        .base_font(base_name)
        .system_info(system)
        .font_descriptor(descriptor)
        .default_width(0.0)
        .cid_to_gid_map_predefined(Name(b"Identity"));
    {
        let mut widths = cid_font.widths();
        for (gid, (_, width)) in &font.used {
            widths.consecutive(*gid, [*width]);
        }
    }
    cid_font.finish();

    let face = &font.face;
    let s = font.scale;
    let bbox = face.global_bounding_box();
    pdf.font_descriptor(descriptor)
        .name(base_name)
        .flags(FontFlags::SYMBOLIC)
        .bbox(Rect::new(
            f32::from(bbox.x_min) * s,
            f32::from(bbox.y_min) * s,
            f32::from(bbox.x_max) * s,
            f32::from(bbox.y_max) * s,
        ))
        .italic_angle(0.0)
        .ascent(f32::from(face.ascender()) * s)
        .descent(f32::from(face.descender()) * s)
        .cap_height(f32::from(face.capital_height().unwrap_or(face.ascender())) * s)
        .stem_v(80.0)
        .font_file2(file);

    let subset = subsetter::subset(font_data, 0, &font.remapper)
        .map_err(|e| format!("the font cannot be subset: {e}"))?;
    pdf.stream(file, &subset)
        .pair(Name(b"Length1"), subset.len() as i32);

    let mut unicode = UnicodeCmap::new(Name(b"Custom"), system);
    for (gid, (c, _)) in &font.used {
        if *gid != 0 {
            unicode.pair(*gid, *c);
        }
    }
    pdf.cmap(cmap, &unicode.finish());
    Ok(pdf.finish())
}

/// `BHINVC+Family`: a subset font's name carries a six-letter tag.
fn font_base_name(face: &ttf_parser::Face) -> String {
    let family = face
        .names()
        .into_iter()
        .find(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME && n.is_unicode())
        .and_then(|n| n.to_string())
        .unwrap_or_else(|| "Font".into());
    let clean: String = family
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("BHINVC+{clean}")
}
