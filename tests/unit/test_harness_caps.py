"""The tests' own XEP-0115 §5.1 (tests/harness/caps.py) against the XEP's two examples:
it is the oracle integration tests check the gateway's caps with, so it is checked
against the specification, never against gateway/xmpp/caps.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.harness.caps import caps_ver

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
</query>"""

# §5.3, fields and values out of order on purpose (the algorithm sorts them)
COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'
       node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='software'><value>Psi</value></field>
    <field var='ip_version' type='text-multi'><value>ipv6</value><value>ipv4</value></field>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>"""


def test_simple_generation_example() -> None:  # XEP-0115 §5.2
    assert caps_ver(ET.fromstring(SIMPLE)) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_generation_example() -> None:  # XEP-0115 §5.3
    assert caps_ver(ET.fromstring(COMPLEX)) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_any_change_of_content_changes_the_hash() -> None:
    query = ET.fromstring(SIMPLE)
    ET.SubElement(query, "{http://jabber.org/protocol/disco#info}feature", var="urn:xmpp:receipts")
    assert caps_ver(query) != "QgayPKawpkPSDYmwT/WM94uAlu0="
