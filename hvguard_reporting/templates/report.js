(function(){
var grid=document.getElementById('grid'),form=document.getElementById('filters');
var heads=Array.prototype.slice.call(grid.querySelectorAll('thead th.ch'));
var rows=Array.prototype.slice.call(grid.querySelectorAll('tbody tr.host'));
var style=document.createElement('style');document.head.appendChild(style);
function checked(name){return Array.prototype.slice.call(
  form.querySelectorAll("input[name='"+name+"']:checked")).map(function(i){return i.value;});}
function apply(){
  var sev=checked('severity'),area=checked('area'),hidden=[],visible={};
  heads.forEach(function(th,i){
    if(sev.indexOf(th.dataset.sev)<0||area.indexOf(th.dataset.area)<0){hidden.push('.k'+i);}
    else{visible['k'+i]=true;}});
  style.textContent=hidden.length?hidden.join(',')+'{display:none}':'';
  var statuses=checked('status'),only=document.getElementById('failing').checked;
  var q=document.getElementById('search').value.trim().toLowerCase(),shown=0;
  rows.forEach(function(r){
    var ok=!q||r.cells[0].textContent.toLowerCase().indexOf(q)>=0;
    if(ok){ok=false;for(var c=2;c<r.cells.length&&!ok;c++){
      var td=r.cells[c],k=td.className.match(/\bk\d+\b/),s=td.className.match(/\bs-(\w+)/);
      if(k&&visible[k[0]]&&s&&statuses.indexOf(s[1])>=0){ok=true;}}}
    if(ok&&only&&!r.classList.contains('failing')){ok=false;}
    r.style.display=ok?'':'none';if(ok){shown++;}});
  document.getElementById('shown').textContent=shown;}
form.addEventListener('change',apply);
document.getElementById('search').addEventListener('input',apply);
document.getElementById('expand').addEventListener('click',function(){
  grid.querySelectorAll('td.s-drift details,td.s-error details').forEach(
    function(d){d.open=!d.open;});});
})();
