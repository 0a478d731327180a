//! Go's text/tabwriter as Docker's CLI sets it up (minwidth 10, tabwidth 1,
//! padding 3, padchar ' ', no flags).

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Collects lines of tab-separated cells and aligns them the way Go does:
/// a column's width is set per block of consecutive lines that have that
/// column, and the last cell of a line (not tab-terminated) is not aligned.
#[derive(Default)]
pub struct TabWriter {
    lines: Vec<Vec<String>>,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

impl TabWriter {
    pub fn new() -> Self {
        TabWriter::default()
    }

    /// Adds text that may hold several lines of tab-separated cells.
    pub fn add(&mut self, text: &str) {
        for line in text.split('\n') {
            self.lines
                .push(line.split('\t').map(str::to_string).collect());
        }
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<Vec<usize>> = self
            .lines
            .iter()
            .map(|l| vec![0; l.len().saturating_sub(1)])
            .collect();
        self.format(0, 0, self.lines.len(), &mut widths);
        let mut out = String::new();
        for (line, w) in self.lines.iter().zip(&widths) {
            for (i, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if i < w.len() {
                    out.extend(std::iter::repeat_n(' ', w[i] - width(cell)));
                }
            }
            out.push('\n');
        }
        out
    }

    /// Go's tabwriter.format: finds blocks of consecutive lines with a cell
    /// in column `col` and sizes that column per block, recursively.
    fn format(&self, col: usize, start: usize, end: usize, widths: &mut [Vec<usize>]) {
        let mut line = start;
        while line < end {
            if self.lines[line].len().saturating_sub(1) > col {
                let block_start = line;
                let mut w = MIN_WIDTH;
                while line < end && self.lines[line].len().saturating_sub(1) > col {
                    w = w.max(width(&self.lines[line][col]) + PADDING);
                    line += 1;
                }
                for wl in &mut widths[block_start..line] {
                    wl[col] = w;
                }
                self.format(col + 1, block_start, line, widths);
            } else {
                line += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_images_layout() {
        let mut t = TabWriter::new();
        t.add("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE");
        t.add("busybox\tlatest\t0123456789ab\t2 minutes ago\t2.14MB");
        assert_eq!(
            t.render(),
            "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n\
             busybox      latest    0123456789ab   2 minutes ago   2.14MB\n"
        );
    }

    #[test]
    fn blocks_are_sized_separately() {
        let mut t = TabWriter::new();
        t.add("a\tb");
        t.add("");
        t.add("a-very-long-cell-here\tc");
        assert_eq!(t.render(), "a         b\n\na-very-long-cell-here   c\n");
    }
}
