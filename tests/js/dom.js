// A small DOM for the fragments' tests: elements with attributes and children, a document,
// and a MutationObserver that, as a browser's, gets the records of a task's changes together
// in a microtask. Only what watchFragments uses: attribute selectors ("[name]") in matches and
// querySelectorAll, isConnected, dispatchEvent (each event is also kept in `heard`).
"use strict";

class FakeNode extends EventTarget {
  constructor(nodeType) {
    super();
    this.nodeType = nodeType;
    this.parentNode = null;
    this.childNodes = [];
  }
  get isConnected() {
    return this.top() instanceof FakeDocument;
  }
  top() {
    let node = this;
    while (node.parentNode) node = node.parentNode;
    return node;
  }
  get children() {
    return this.childNodes.filter((node) => node.nodeType === 1);
  }
  append(...nodes) {
    for (const node of nodes) {
      if (node.parentNode) node.remove();
      node.parentNode = this;
      this.childNodes.push(node);
    }
    mutated(this, {type: "childList", target: this, addedNodes: nodes, removedNodes: []});
  }
  remove() {
    const parent = this.parentNode;
    if (!parent) return;
    parent.childNodes.splice(parent.childNodes.indexOf(this), 1);
    this.parentNode = null;
    mutated(parent, {type: "childList", target: parent, addedNodes: [], removedNodes: [this]});
  }
  // As htmx's outerHTML swap: the new node in, then this one out, in one task.
  replaceWith(node) {
    const parent = this.parentNode;
    parent.childNodes.splice(parent.childNodes.indexOf(this), 1, node);
    node.parentNode = parent;
    this.parentNode = null;
    mutated(parent, {type: "childList", target: parent, addedNodes: [node], removedNodes: [this]});
  }
  querySelectorAll(selector) {
    const found = [];
    for (const child of this.children) {
      if (child.matches(selector)) found.push(child);
      found.push(...child.querySelectorAll(selector));
    }
    return found;
  }
}

class FakeElement extends FakeNode {
  constructor(tagName, attributes) {
    super(1);
    this.tagName = tagName.toUpperCase();
    this.attributes = new Map(Object.entries(attributes || {}));
    this.heard = [];
  }
  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }
  setAttribute(name, value) {
    this.attributes.set(name, String(value));
    mutated(this, {type: "attributes", target: this, attributeName: name});
  }
  removeAttribute(name) {
    this.attributes.delete(name);
    mutated(this, {type: "attributes", target: this, attributeName: name});
  }
  matches(selector) {
    const attribute = /^\[([\w-]+)\]$/.exec(selector);
    if (!attribute) throw new Error(`the fake DOM knows no selector ${selector}`);
    return this.attributes.has(attribute[1]);
  }
  dispatchEvent(event) {
    this.heard.push(event);
    return super.dispatchEvent(event);
  }
}

class FakeDocument extends FakeNode {
  constructor() {
    super(9);
    this.documentElement = new FakeElement("html");
    this.body = new FakeElement("body");
    this.append(this.documentElement);
    this.documentElement.append(this.body);
  }
}

class FakeMutationObserver {
  static all = [];
  constructor(callback) {
    this.callback = callback;
    this.root = null;
    this.options = null;
    this.records = [];
  }
  observe(root, options) {
    this.root = root;
    this.options = options;
    FakeMutationObserver.all.push(this);
  }
  disconnect() {
    FakeMutationObserver.all = FakeMutationObserver.all.filter((o) => o !== this);
    this.records = [];
  }
  wants(node, record) {
    const {subtree, attributeFilter} = this.options;
    if (record.type === "attributes" && !(attributeFilter || []).includes(record.attributeName)) {
      return false;
    }
    for (let at = node; at; at = at.parentNode) {
      if (at === this.root) return true;
      if (!subtree) return false;
    }
    return false;
  }
  take(record) {
    if (this.records.length === 0) queueMicrotask(() => this.deliver());
    this.records.push(record);
  }
  deliver() {
    const records = this.records;
    this.records = [];
    if (records.length) this.callback(records, this);
  }
}

function mutated(node, record) {
  for (const observer of FakeMutationObserver.all) {
    if (observer.wants(node, record)) observer.take(record);
  }
}

// An element `tag` with `attributes` and `children`.
function element(tag, attributes, ...children) {
  const node = new FakeElement(tag, attributes);
  node.append(...children);
  return node;
}

module.exports = {FakeDocument, FakeElement, FakeMutationObserver, element};
