"""Sample Q&A rows shared by the prep-stage tests (importable: tests/data is on sys.path)."""

from __future__ import annotations

SYSTEM = "You are a security assistant."
TOPICS = [
    ("firewall", "A firewall filters network traffic using rules that allow or block packets."),
    ("VPN", "A VPN encrypts traffic between your device and a remote endpoint."),
    ("phishing", "Phishing emails trick users into revealing passwords or installing malware."),
    ("MFA", "Multi-factor authentication adds a second factor such as a code or a key."),
    ("ransomware", "Ransomware encrypts files and demands payment; offline backups let you restore."),
    ("IAM", "IAM policies grant each identity the least privilege it needs in the cloud."),
    ("password reset", "Open the account settings, choose reset, and follow the emailed link."),
    ("router", "Restart the router, check the cables, then check the provider's status page."),
    ("encryption", "Encryption turns readable data into ciphertext that only key holders can read."),
    ("patching", "Patching closes known vulnerabilities; apply security updates promptly."),
    ("backup", "Keep three copies of data on two media with one copy offsite."),
    ("DNS", "DNS translates names such as example.com into IP addresses."),
]
DOMAINS = ["Cybersecurity", "IT Support", "Cloud Computing"]


QUESTIONS = [
    "What is {topic} and why does it matter?",
    "How should a small office handle {topic}?",
    "Which mistakes do beginners make with {topic}?",
    "Can you explain {topic} to a new employee in two sentences?",
]
PREFIXES = ["", "For a small office: ", "A common mistake is ignoring this: ", "In short: "]


def qa_rows(count: int = 24) -> list[tuple[str, str, str]]:
    """Distinct (question, answer, domain) triples (up to 48), none a near-duplicate of another."""
    rows = []
    for index in range(count):
        topic, answer = TOPICS[index % len(TOPICS)]
        variant = index // len(TOPICS)
        question = QUESTIONS[variant].format(topic=topic)
        rows.append((question, PREFIXES[variant] + answer, DOMAINS[index % len(DOMAINS)]))
    return rows
