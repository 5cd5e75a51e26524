// The stage catalogue of PCB fabrication and PCBA assembly (see ../shared/DOMAIN.md): one world
// for the demo, the simulator, the tests and the benchmarks. Hours are median / p90.

export type FactoryKind = 'fabrication' | 'assembly' | 'components' | 'testing' | 'logistics';

export interface StageInfo {
  code: string;
  name: string;
  kind: FactoryKind;
  medianHours: number;
  p90Hours: number;
}

export const STAGES: Record<string, StageInfo> = Object.fromEntries(
  (
    [
      ['review', 'Engineering review (DFM)', 'fabrication', 0.5, 4],
      ['cam', 'CAM / manufacturing instructions', 'fabrication', 2, 24],
      ['cutting', 'Laminate cutting', 'fabrication', 0.5, 2],
      ['inner_layers', 'Inner layers: imaging, etch, AOI, lamination', 'fabrication', 6, 12],
      ['drilling', 'CNC drilling', 'fabrication', 2, 6],
      ['plating', 'Through-hole and panel plating', 'fabrication', 3, 6],
      ['outer_imaging', 'Outer-layer imaging', 'fabrication', 1.5, 4],
      ['pattern_plating', 'Pattern plating', 'fabrication', 2.5, 5],
      ['etching', 'Etch, strip, AOI', 'fabrication', 1.5, 4],
      ['solder_mask', 'Solder mask', 'fabrication', 3, 8],
      ['silkscreen', 'Legend printing', 'fabrication', 1.5, 4],
      ['surface_finish', 'Surface finish (HASL / ENIG)', 'fabrication', 2.5, 6],
      ['routing', 'Profiling, V-score', 'fabrication', 1.5, 4],
      ['electrical_test', 'Flying probe / fixture test', 'testing', 1, 4],
      ['final_qc', 'Final inspection', 'testing', 1, 4],
      ['stencil', 'Stencil', 'assembly', 4, 12],
      ['components', 'Component sourcing', 'components', 24, 400],
      ['smt', 'SMT placement and reflow', 'assembly', 6, 16],
      ['aoi', 'Automated optical inspection', 'assembly', 1, 3],
      ['through_hole', 'Through-hole soldering', 'assembly', 8, 24],
      ['functional_test', 'Functional test', 'testing', 2, 8],
      ['packing', 'Packing, to the shipping centre', 'logistics', 2, 24],
      ['shipping', 'With the carrier', 'logistics', 72, 168],
    ] as const
  ).map(([code, name, kind, medianHours, p90Hours]) => [code, { code, name, kind, medianHours, p90Hours }]),
);

export interface RouteTemplateStep {
  stage: string;
  after?: string[];
}

const FAB_CORE = ['cutting', 'drilling', 'plating', 'outer_imaging', 'pattern_plating', 'etching', 'solder_mask', 'silkscreen', 'surface_finish', 'routing', 'electrical_test', 'final_qc'];

/** Route shapes by product family; `after` defaults to the step before. */
export const ROUTES: Record<string, RouteTemplateStep[]> = {
  'pcb-2layer': [{ stage: 'review' }, { stage: 'cam' }, ...FAB_CORE.map((stage) => ({ stage })), { stage: 'packing' }, { stage: 'shipping' }],
  'pcb-4layer': [
    { stage: 'review' },
    { stage: 'cam' },
    { stage: 'cutting' },
    { stage: 'inner_layers' },
    ...FAB_CORE.slice(1).map((stage) => ({ stage })),
    { stage: 'packing' },
    { stage: 'shipping' },
  ],
  // Assembly: the stencil and the components are prepared while the bare board is made.
  pcba: [
    { stage: 'review' },
    { stage: 'cam' },
    ...FAB_CORE.map((stage) => ({ stage })),
    { stage: 'stencil', after: ['review'] },
    { stage: 'components', after: ['review'] },
    { stage: 'smt', after: ['final_qc', 'stencil', 'components'] },
    { stage: 'aoi' },
    { stage: 'through_hole' },
    { stage: 'functional_test' },
    { stage: 'packing' },
    { stage: 'shipping' },
  ],
};

export const PRODUCTS: Record<string, string[]> = {
  'pcb-2layer': ['2-layer FR4 1.6mm HASL', '2-layer FR4 1.0mm ENIG', '2-layer aluminium LED board'],
  'pcb-4layer': ['4-layer FR4 1.6mm ENIG', '6-layer FR4 impedance control', '4-layer flex-rigid'],
  pcba: ['PCBA 2-layer, 120 SMD parts', 'PCBA 4-layer, BGA, 480 parts', 'PCBA IoT module, 60 parts'],
};
