//! A small, bounded XML reader for the SIMPLE payloads (is-composing,
//! IMDN, and later PIDF and friends): it turns a document into a tree of
//! namespace-resolved elements, so each payload is an interpretation of
//! that tree rather than its own event loop.
//!
//! Bounded on purpose: a size limit before parsing, a depth limit, no
//! DOCTYPE (so no entity expansion), only the predefined entities and
//! character references, exactly one root element.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError(why.into()))
}

/// One element: its namespace URI (None when unbound), local name,
/// attributes (local name, unescaped value), child elements and the text
/// directly inside it (pieces joined, not trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Whether this is `name` in namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    /// Children in namespace `ns`.
    pub fn children_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.ns.as_deref() == Some(ns))
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Limits for [`parse`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_size: usize,
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 64 * 1024,
            max_depth: 16,
            max_elements: 1024,
        }
    }
}

fn namespace(ns: ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    Ok(match ns {
        ResolveResult::Bound(n) => Some(
            std::str::from_utf8(n.as_ref())
                .map_err(|_| XmlError("a namespace that is not UTF-8".into()))?
                .to_string(),
        ),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(p) => {
            return err(format!(
                "undeclared namespace prefix {:?}",
                String::from_utf8_lossy(&p)
            ))
        }
    })
}

fn element(
    ns: Option<String>,
    e: &BytesStart<'_>,
    r: &NsReader<&[u8]>,
) -> Result<Element, XmlError> {
    let mut attributes = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| XmlError(e.to_string()))?;
        let key = a.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (_, local) = r.resolve_attribute(key);
        let value = a
            .decode_and_unescape_value(r.decoder())
            .map_err(|e| XmlError(e.to_string()))?;
        attributes.push((
            String::from_utf8_lossy(local.as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(Element {
        ns,
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        attributes,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parse a whole document into its root element.
pub fn parse(input: &[u8], limits: Limits) -> Result<Element, XmlError> {
    if input.len() > limits.max_size {
        return err(format!(
            "{} bytes, more than {}",
            input.len(),
            limits.max_size
        ));
    }
    let mut r = NsReader::from_reader(input);
    // The open elements, innermost last.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| XmlError(e.to_string()))?;
        let ns = namespace(ns)?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return err("more than one root element");
                }
                count += 1;
                if count > limits.max_elements {
                    return err("too many elements");
                }
                if stack.len() >= limits.max_depth {
                    return err("elements nested too deep");
                }
                let el = element(ns, e, &r)?;
                if matches!(ev, Event::Start(_)) {
                    stack.push(el);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let Some(el) = stack.pop() else {
                    return err("an end tag without its start");
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t.xml_content().map_err(|e| XmlError(e.to_string()))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return err("text outside the root element"),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|e| XmlError(e.to_string()))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None => return err("CDATA outside the root element"),
                }
            }
            Event::GeneralRef(g) => {
                let c = match g.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = g.decode().map_err(|e| XmlError(e.to_string()))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError(format!("unknown entity &{name};")))?
                            .to_string()
                    }
                    Err(e) => return err(e.to_string()),
                };
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&c),
                    None => return err("a reference outside the root element"),
                }
            }
            Event::DocType(_) => return err("DOCTYPE is not allowed"),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return err("the document ends inside an element");
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

/// `s` escaped for element text or an attribute value.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_resolved_tree() {
        let doc = br#"<?xml version="1.0"?>
<a:root xmlns:a="urn:a" xmlns="urn:d" x="1&amp;2">
  <child>t&lt;1<![CDATA[<raw>]]>&#65;</child>
  <a:empty/>
  <plain xmlns="">p</plain>
</a:root>"#;
        let root = parse(doc, Limits::default()).unwrap();
        assert!(root.is("urn:a", "root"));
        assert_eq!(root.attribute("x"), Some("1&2"));
        assert_eq!(root.children.len(), 3);
        assert!(root.children[0].is("urn:d", "child"));
        assert_eq!(root.children[0].text, "t<1<raw>A");
        assert!(root.children[1].is("urn:a", "empty"));
        assert_eq!(root.children[2].ns, None);
        assert_eq!(root.children_in("urn:d").count(), 1);
    }

    #[test]
    fn refuses_what_it_must() {
        let deep = format!("<a>{}</a>", "<b>".repeat(20));
        let many = format!("<a>{}</a>", "<b/>".repeat(2000));
        let bad: Vec<&[u8]> = vec![
            b"",
            b"text",
            b"<a>",
            b"<a></b>",
            b"<a/><b/>",
            b"<a/>trailing",
            b"<x:a/>",
            b"<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
            b"<a>&bogus;</a>",
            b"<a>&#0;</a>",
            b"<a x='1' x='2'/>",
            deep.as_bytes(),
            many.as_bytes(),
        ];
        for b in bad {
            assert!(
                parse(b, Limits::default()).is_err(),
                "{}",
                String::from_utf8_lossy(b)
            );
        }
        let limits = Limits {
            max_size: 4,
            ..Limits::default()
        };
        assert!(parse(b"<abc/>", limits).is_err());
    }
}
