"""A long real English text (written for this project) for benchmarks at MiniLM's 512-token limit."""

TEXT = """
The lighthouse keeper had kept the same routine for thirty-one years. Every evening, an hour before sunset,
he climbed the one hundred and twelve steps of the tower, wiped the salt from the great lens, trimmed the
wick, and wrote the weather into a ledger whose pages had gone soft with damp. The ships that passed the
headland no longer needed him; they carried their own maps and their own lights, and a voice from a
satellite told them where the rocks were. Still, the harbour board paid him, and still he climbed.
In the spring of his thirty-second year a letter arrived from the city. The light was to be automated. A
team of engineers would come in June with a lamp that needed no keeper, a battery that charged itself from
the sun, and a small grey box that would report to an office two hundred miles away whenever anything went
wrong. The letter thanked him for his service and offered him a cottage in the village, a pension, and a
brass plaque with his name on it, to be fixed beside the door of the tower.
He read the letter twice and put it in the ledger, between the pages for March and April. Then he went on
as before. He climbed the steps, he wiped the lens, he wrote down the wind. When the children from the
village school came on their annual visit, he showed them the clockwork that had once turned the light,
and let each of them wind it three times, and told them about the winter of the great storm, when the sea
had come over the top of the cliff and put out the fire in his kitchen, and he had kept the lamp burning
with oil carried up in a kettle because the pump had frozen.
The engineers arrived on a Tuesday. They were younger than he had expected, and polite, and they asked him
a great many questions about the tower, which he answered carefully. They measured the walls and
photographed the lens and laughed at the ledger until they saw the dates on the first pages, and then they
stopped laughing and turned the pages slowly, one by one, reading the weather of years before they were
born. On the last evening, when the new lamp had been fitted and tested and the grey box had sent its first
message to the city, the oldest of the engineers asked whether he would climb the steps one more time, with
them, to watch the light come on by itself. He said that he would. They stood together at the top while the
sun went down into the sea, and at the moment the sky turned from orange to violet the new lamp woke,
without a sound, and swept its beam across the water, steady and bright and entirely indifferent to them.
"""
